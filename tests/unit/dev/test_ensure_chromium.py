"""`scripts/ensure_chromium.sh`, which `make test` runs so that a fresh Debian machine gets the
browser the browser tests drive: nothing when it is there, apt-get when it is not.

apt-get (and sudo, for a run that is not root) are stand-ins on PATH that record how they were
called; the browser is a file in a temporary folder, which the fake apt-get "installs".
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "ensure_chromium.sh"
BASH = shutil.which("bash") or "/bin/bash"

FAKE_APT_GET = """#!/bin/sh
echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND apt-get $*" >> "{calls}"
case "$*" in
  *install*)
    if [ -n "{refuse}" ]; then echo "E: Unable to locate package chromium" >&2; exit 100; fi
    printf '#!/bin/sh\\necho Chromium 1.2.3\\n' > "{browser}"; chmod +x "{browser}" ;;
esac
"""


def fake_tools(tmp_path: Path, *, refuse: bool = False) -> tuple[Path, Path, Path]:
    """A bin folder with apt-get and sudo stand-ins; the browser's path; the calls' record."""
    bin_dir, browser, calls = tmp_path / "bin", tmp_path / "chromium", tmp_path / "calls"
    bin_dir.mkdir()
    apt_get = bin_dir / "apt-get"
    apt_get.write_text(FAKE_APT_GET.format(calls=calls, browser=browser, refuse="1" * refuse))
    sudo = bin_dir / "sudo"
    sudo.write_text('#!/bin/sh\nexec "$@"\n')
    for tool in (apt_get, sudo):
        tool.chmod(0o755)
    return bin_dir, browser, calls


def ensure(browser: Path, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(SCRIPT), str(browser)],
        env={"PATH": path},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_an_installed_browser_is_left_alone_quietly(tmp_path: Path) -> None:
    bin_dir, browser, calls = fake_tools(tmp_path)
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    done = ensure(browser, f"{bin_dir}:/usr/bin:/bin")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not calls.exists()


def test_a_missing_browser_is_installed_with_apt_get_once(tmp_path: Path) -> None:
    bin_dir, browser, calls = fake_tools(tmp_path)
    done = ensure(browser, f"{bin_dir}:/usr/bin:/bin")
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        "DEBIAN_FRONTEND=noninteractive apt-get update -qq",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium",
    ]
    assert f"{browser} is missing: installing Debian's chromium package" in done.stderr
    assert "installed Chromium 1.2.3" in done.stderr
    again = ensure(browser, f"{bin_dir}:/usr/bin:/bin")
    assert (again.returncode, again.stderr) == (0, "")
    assert len(calls.read_text().splitlines()) == 2  # no apt-get the second time


def test_apt_get_failing_fails_with_its_last_lines(tmp_path: Path) -> None:
    bin_dir, browser, _ = fake_tools(tmp_path, refuse=True)
    done = ensure(browser, f"{bin_dir}:/usr/bin:/bin")
    assert done.returncode == 1
    assert "apt-get could not install chromium; its last lines:" in done.stderr
    assert "E: Unable to locate package chromium" in done.stderr


def test_without_apt_get_it_says_what_to_install(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = ensure(tmp_path / "chromium", str(empty))
    assert done.returncode == 1
    assert f"{tmp_path / 'chromium'} is missing and this machine has no apt-get" in done.stderr

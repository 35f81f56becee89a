"""`make protos-check` fails when a proto changes without `make protos`, and passes otherwise."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gen_protos.py"
GENERATED = ROOT / "libs" / "protos" / "src"


def run_check(protos: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--protos", str(protos), str(GENERATED)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_committed_code_matches_the_protos() -> None:
    result = run_check(ROOT / "protos")
    assert result.returncode == 0, result.stderr


def test_a_changed_proto_without_regeneration_is_drift(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    posts = protos / "kairos" / "posts" / "v1" / "posts.proto"
    text = posts.read_text()
    changed = text.replace(
        "message GetPostRequest {\n",
        "message GetPostRequest {\n  // Added without regenerating.\n  bool drift = 99;\n",
    )
    assert changed != text
    posts.write_text(changed)

    result = run_check(protos)

    assert result.returncode == 1
    assert "run `make protos`" in result.stderr
    assert "kairos/posts/v1/posts_pb2.py" in result.stderr

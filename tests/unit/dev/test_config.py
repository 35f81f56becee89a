"""kairos-dev before it starts anything: options, dev.env, the children's environment, the
checks that refuse to start, and the banner."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kairos_common.platforms import CATALOGUE
from kairos_dev.banner import READY_LINE, banner
from kairos_dev.config import (
    DevError,
    DevOptions,
    load_dev_env,
    parse_args,
    plan_children,
    service_env,
)
from kairos_dev.preflight import check_leftovers, check_ports, lock_data_dir, port_in_use
from kairos_dev.supervisor import describe_exit


def test_dev_env_is_made_private_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    first = load_dev_env(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(first["KAIROS_SECRET_KEY"]) >= 32
    assert first["KAIROS_SERVICE_TOKEN"]
    assert len(first["KAIROS_CONSOLE_SECRET"]) >= 32
    assert load_dev_env(path) == first
    assert load_dev_env(tmp_path / "other.env")["KAIROS_SECRET_KEY"] != first["KAIROS_SECRET_KEY"]


def test_dev_env_keeps_what_the_user_added_and_fills_in_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    path.write_text("# mine\nexport KAIROS_LOG_LEVEL='debug'\nKAIROS_SERVICE_TOKEN=kept")
    path.chmod(0o644)
    values = load_dev_env(path)
    assert values["KAIROS_LOG_LEVEL"] == "debug"
    assert values["KAIROS_SERVICE_TOKEN"] == "kept"
    assert values["KAIROS_SECRET_KEY"]
    assert path.read_text().startswith("# mine\nexport KAIROS_LOG_LEVEL='debug'\n")
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_dev_env(path) == values


def test_a_malformed_dev_env_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    path.write_text("KAIROS_LOG_LEVEL=debug\nnot a setting\n")
    with pytest.raises(DevError, match=r"dev.env:2: expected NAME=value"):
        load_dev_env(path)


def test_kairos_dev_decides_addresses_database_and_nats_whatever_the_shell_exported() -> None:
    options = DevOptions(Path("/data"), nats_port=1, api_port=2, scheduler_port=3)
    shell = {
        "KAIROS_DATABASE_URL": "postgresql://elsewhere/prod",
        "KAIROS_SECRET_KEY": "from-the-shell",
        "KAIROS_LOG_LEVEL": "debug",
        "KAIROS_MIGRATE_ON_START": "false",
        "KAIROS_ENV": "production",
        "KAIROS_MEDIA_STORE": "s3://someone-elses-bucket",
        "PATH": "/bin",
    }
    env = service_env(options, {"KAIROS_SECRET_KEY": "from-dev-env"}, shell)
    assert env["KAIROS_ENV"] == "development"  # production is the services' own default
    assert env["KAIROS_DATABASE_URL"] == "sqlite:////data/kairos.db"
    assert env["KAIROS_MIGRATE_ON_START"] == "true"
    assert env["KAIROS_SECRET_KEY"] == "from-dev-env"
    assert env["KAIROS_LOG_LEVEL"] == "debug"
    assert env["PATH"] == "/bin"
    assert env["KAIROS_ALLOW_HTTP_MEDIA"] == "true"
    assert env["KAIROS_NATS_URL"] == "nats://127.0.0.1:1"
    assert env["KAIROS_API_ADDR"] == env["KAIROS_API_TARGET"] == "127.0.0.1:2"
    assert env["KAIROS_SCHEDULER_ADDR"] == "127.0.0.1:3"
    assert env["KAIROS_MEDIA_STORE"] == "/data/media"  # the api's uploads, the publisher's reads


def test_children_start_with_nats_and_the_sandbox_and_end_with_the_workers(tmp_path: Path) -> None:
    options = parse_args(["--data-dir", str(tmp_path), "--nats-port", "14999"])
    specs = plan_children(options, {})
    assert [(s.name, s.stage) for s in specs] == [
        ("nats", 0),
        ("sandbox", 0),
        ("fakes", 0),
        ("api", 1),
        ("scheduler", 2),
        ("publisher", 2),
        ("console", 2),
    ]
    nats = specs[0].argv
    assert nats[0] == str(Path(sys.executable).parent / "nats-server")
    assert "--jetstream" in nats
    assert f"--store_dir={tmp_path / 'nats'}" in nats
    assert "--port=14999" in nats
    assert specs[2].argv[1:] == ("-m", "kairos_fakes", "--host=127.0.0.1", "--port-offset=0")
    assert specs[3].argv[1:] == ("-m", "kairos_api")
    assert {s.port for s in specs} == {14999, 50051, 50052, 50053, 8090, 9100, 8080}


def test_the_console_listens_on_its_port_and_talks_to_the_api(tmp_path: Path) -> None:
    options = parse_args(
        ["--data-dir", str(tmp_path), "--console-port", "18080", "--api-port", "6051"]
    )
    shell = {"KAIROS_CONSOLE_ADDR": "0.0.0.0:80"}  # another console's, exported in this shell
    console = {s.name: s for s in plan_children(options, {"KAIROS_CONSOLE_SECRET": "s"}, shell)}[
        "console"
    ]
    assert console.argv[1:] == ("-m", "kairos_console")
    assert (console.port, console.option, console.probe) == (18080, "--console-port", "tcp")
    assert console.env["KAIROS_CONSOLE_ADDR"] == "127.0.0.1:18080"
    assert console.env["KAIROS_API_TARGET"] == "127.0.0.1:6051"
    assert console.env["KAIROS_ENV"] == "development"  # cookies without Secure, over plain http
    assert console.env["KAIROS_CONSOLE_SECRET"] == "s"  # from dev.env: sign-ins outlast restarts


def test_the_publisher_is_pointed_at_the_fakes_unless_they_are_off(tmp_path: Path) -> None:
    options = parse_args(["--data-dir", str(tmp_path), "--fakes-port", "19100"])
    env = plan_children(options, {})[-1].env
    urls = dict(item.split("=", 1) for item in env["KAIROS_PLATFORM_URLS"].split(","))
    assert urls["x"] == "http://127.0.0.1:19101"
    # Every public platform of the catalogue has a fake, and only those.
    assert set(urls) == {platform.value for platform, info in CATALOGUE.items() if not info.own}
    assert {"x", "mastodon", "pinterest", "tiktok"} <= set(urls)
    assert "media" not in urls
    assert env["KAIROS_MEDIA_ALLOWED_NETWORKS"] == "127.0.0.0/8,::1/128"
    assert env["KAIROS_WEBHOOK_ALLOWED_NETWORKS"] == "127.0.0.0/8,::1/128"

    real = parse_args(["--data-dir", str(tmp_path), "--no-fakes"])
    specs = plan_children(real, {})
    assert "fakes" not in [s.name for s in specs]
    assert "KAIROS_PLATFORM_URLS" not in specs[-1].env


def test_two_options_on_one_port_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--api-port", "7000", "--sandbox-port", "7000"])
    assert exit_info.value.code == 2
    assert "--api-port and --sandbox-port are both 7000" in capsys.readouterr().err


def test_a_port_in_use_is_named_with_its_option(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use(port)
        options = DevOptions(tmp_path, publisher_port=port)
        with pytest.raises(DevError) as error:
            check_ports([s for s in plan_children(options, {}) if s.name == "publisher"])
    assert str(error.value) == (
        f"port {port} (publisher) is already in use on 127.0.0.1; "
        "stop what listens there or choose another with --publisher-port PORT"
    )
    assert not port_in_use(port)


def test_one_supervisor_per_data_folder(tmp_path: Path) -> None:
    with lock_data_dir(tmp_path), pytest.raises(DevError, match="in use by another kairos-dev"):
        lock_data_dir(tmp_path)
    lock_data_dir(tmp_path).close()  # free again once the first let go


def test_children_left_by_a_killed_supervisor_are_named(tmp_path: Path) -> None:
    pids = tmp_path / "pids.json"
    argv = ["sleep", "30"]
    leftover = subprocess.Popen(argv)
    cmdline = Path(f"/proc/{leftover.pid}/cmdline")
    deadline = time.monotonic() + 5
    while not cmdline.read_bytes() and time.monotonic() < deadline:  # empty until it has exec'd
        time.sleep(0.01)
    try:
        record = {"supervisor": 1, "children": [{"name": "api", "pid": leftover.pid, "argv": argv}]}
        pids.write_text(json.dumps(record))
        with pytest.raises(DevError, match=rf"api \(pid {leftover.pid}\).*kill {leftover.pid}"):
            check_leftovers(pids)
    finally:
        leftover.kill()
        leftover.wait()
    check_leftovers(pids)  # gone now: the record is dropped
    assert not pids.exists()


def test_the_banner_says_where_everything_listens_and_how_to_try_it(tmp_path: Path) -> None:
    options = DevOptions(tmp_path / "my data", api_port=6001, sandbox_port=6002, console_port=6003)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "activate").touch()
    text = banner(options, plan_children(options, {}), bin_dir)
    assert text.startswith(READY_LINE)
    commands = [line.split("  #")[0].strip() for line in text.splitlines()]
    database = f"sqlite:///{tmp_path / 'my data' / 'kairos.db'}"
    assert f"source {shlex.quote(str(bin_dir / 'activate'))}" in commands
    assert f"export KAIROS_DATABASE_URL={shlex.quote(database)}" in commands
    assert "export KAIROS_API_TARGET=127.0.0.1:6001" in commands
    assert "export KAIROS_API_KEY=$(kairos keys create --tenant demo)" in commands
    assert any(
        c.startswith("ACCOUNT=$(kairos accounts connect sandbox --handle @demo")
        and c.endswith("--instance-url http://127.0.0.1:6002)")
        for c in commands
    )
    assert 'kairos posts create "Hello from Kairos" --account "$ACCOUNT" --at "in 10s"' in commands
    assert "kairos watch" in commands
    rows = [line.split()[:2] for line in text.splitlines()]
    assert ["console", "http://127.0.0.1:6003/"] in rows
    sign_in = text.partition("Open the console at http://127.0.0.1:6003/ and sign in")[2]
    assert "`kairos keys create --tenant demo` prints one" in sign_in.partition("Try it")[0]


@pytest.mark.parametrize(
    ("code", "said"),
    [(0, "exit code 0"), (2, "exit code 2"), (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM")],
)
def test_exit_codes_read_as_people_say_them(code: int, said: str) -> None:
    assert describe_exit(code) == said


def test_each_service_serves_metrics_on_its_own_port_whatever_the_shell_exported(
    tmp_path: Path,
) -> None:
    options = parse_args(["--data-dir", str(tmp_path), "--metrics-port", "19461"])
    shell = {"KAIROS_METRICS_PORT": "1", "KAIROS_METRICS_HOST": "0.0.0.0"}
    specs = {s.name: s for s in plan_children(options, {}, shell)}
    served = {
        name: (s.env["KAIROS_METRICS_HOST"], s.env["KAIROS_METRICS_PORT"], s.metrics_port)
        for name, s in specs.items()
        if s.metrics_port
    }
    assert served == {
        "api": ("127.0.0.1", "19461", 19461),
        "scheduler": ("127.0.0.1", "19462", 19462),
        "publisher": ("127.0.0.1", "19463", 19463),
    }
    assert specs["api"].metrics_url == "http://127.0.0.1:19461/metrics"
    # The default leaves the gRPC, NATS, sandbox and fake ports alone.
    defaults = plan_children(DevOptions(tmp_path), {})
    metrics_ports = {s.metrics_port for s in defaults if s.metrics_port}
    assert metrics_ports == {9461, 9462, 9463}
    assert not metrics_ports & {s.port for s in defaults}


def test_the_banner_prints_each_services_metrics_url(tmp_path: Path) -> None:
    options = DevOptions(tmp_path, metrics_port=7100)
    text = banner(options, plan_children(options, {}), tmp_path)
    rows = [line.split() for line in text.splitlines()]
    for offset, name in enumerate(("api", "scheduler", "publisher")):
        url = f"http://127.0.0.1:{7100 + offset}/metrics"
        assert [name, "metrics", url, "Prometheus", "metrics"] in rows, text


def test_a_metrics_port_in_use_is_named_with_its_option(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        options = DevOptions(tmp_path, metrics_port=port - 2, publisher_port=port + 1)
        with pytest.raises(DevError) as error:
            check_ports([s for s in plan_children(options, {}) if s.name == "publisher"])
    # (Only the metrics port is taken, unless port + 1 happened to be busy too.)
    assert (
        f"port {port} (publisher metrics) is already in use on 127.0.0.1; stop what listens "
        "there or choose other ports with --metrics-port PORT (three from PORT)"
    ) in str(error.value).splitlines()

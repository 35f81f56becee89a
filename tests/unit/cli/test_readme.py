"""The README's `kairos` reference and Docker steps hold: every command and option it names exists
(`kairos GROUP COMMAND --help` exits 0), every command of the CLI is in it, the key-creation
step of its Docker section names a compose service that can run it, and it names every status a
post or target can have. (test_client.py runs its Python client example.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.core import TyperGroup
from typer.testing import CliRunner

from kairos.posts.v1 import posts_pb2
from kairos_cli.main import app

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
REFERENCE_HEADING = "### The `kairos` command line"
#: A usage in the reference table's first column: `posts show ID`, `calendar [--days 7]`.
USAGE = re.compile(r"`([a-z][^`]*)`")
DOCKER_KEY_STEP = re.compile(
    r"docker compose exec (?:-T )?(?P<service>[a-z-]+) (?P<command>python -m kairos_api keys create"
    r" --tenant \w+)"
)


def commands() -> dict[tuple[str, ...], Any]:
    """Every command of the `kairos` app by its path, walked from the root."""

    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, command

    return dict(walk(typer.main.get_command(app), ()))


def reference_usages() -> list[str]:
    """The usages in the first column of the README's CLI reference table."""
    section = README.read_text().partition(REFERENCE_HEADING)[2].partition("\n#")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, f"no command table under {REFERENCE_HEADING!r} in the README"
    return [usage for row in rows for usage in USAGE.findall(row.split(" | ")[0])]


def command_path(usage: str) -> tuple[str, ...]:
    """`posts show ID` -> ("posts", "show"): the leading lower-case words."""
    words = []
    for word in usage.split():
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        words.append(word)
    return tuple(words)


def test_the_reference_names_every_command_and_only_real_ones() -> None:
    named = {command_path(usage) for usage in reference_usages()}

    assert named == set(commands())


@pytest.mark.parametrize("usage", reference_usages())
def test_each_usage_in_the_reference_has_help_and_its_options(usage: str) -> None:
    path = command_path(usage)
    command = commands().get(path)
    assert command is not None, f"the README names `kairos {usage}`, which does not exist"

    ran = CliRunner().invoke(app, [*path, "--help"])
    assert ran.exit_code == 0, ran.output

    options = {opt for param in command.params for opt in param.opts}
    named = set(re.findall(r"--[a-z][a-z-]*", usage))
    assert named <= options, f"`kairos {usage}`: unknown options {sorted(named - options)}"


def test_the_docker_key_step_names_the_api_service_with_its_database() -> None:
    found = DOCKER_KEY_STEP.search(README.read_text())
    assert found is not None, "the README's Docker section does not say how to make a key"

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"][found["service"]]
    assert service["build"]["dockerfile"] == "services/api/Dockerfile"  # has kairos_api
    assert "KAIROS_DATABASE_URL" in service["environment"]


@pytest.mark.parametrize(
    ("enum", "prefix"),
    [(posts_pb2.PostStatus, "POST_STATUS_"), (posts_pb2.TargetStatus, "TARGET_STATUS_")],
)
def test_the_readme_names_every_status(enum: Any, prefix: str) -> None:
    text = README.read_text()
    values = enum.DESCRIPTOR.values
    names = [v.name.removeprefix(prefix) for v in values if not v.name.endswith("UNSPECIFIED")]

    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"the README never names these statuses: {missing}"

"""The text printed once everything is ready: where each piece listens and how to try it."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from kairos_dev.config import HOST, ChildSpec, DevOptions
from kairos_fakes import BASE_PORT as FAKES_BASE_PORT
from kairos_fakes.mastodon import MastodonFake

READY_LINE = "Kairos is running."
"""The banner's first words; scripts and tests wait for them."""


def _where(spec: ChildSpec, options: DevOptions) -> str:
    if spec.name == "nats":
        return options.nats_url
    if spec.name == "sandbox":
        return options.sandbox_url
    if spec.name == "console":
        return options.console_url
    return spec.address


def banner(options: DevOptions, specs: Sequence[ChildSpec], bin_dir: Path) -> str:
    """The banner for `specs` running with `options`; `bin_dir` holds the `kairos` command."""
    rows = [(spec.name, _where(spec, options), spec.about) for spec in specs]
    rows += [
        (f"{spec.name} metrics", spec.metrics_url, "Prometheus metrics")
        for spec in specs
        if spec.metrics_port
    ]
    rows += [
        ("database", options.database_url, "SQLite, migrated at start"),
        ("logs", str(options.log_dir / "<name>.log"), "each child's output, also shown here"),
    ]
    name_width = max(len(name) for name, _, _ in rows)
    where_width = max(len(where) for _, where, _ in rows)
    table = [
        f"  {name:<{name_width}}  {where:<{where_width}}  {about}" for name, where, about in rows
    ]

    q = shlex.quote
    steps: list[tuple[str, str]] = []
    activate = bin_dir / "activate"
    if activate.exists():
        steps.append((f"source {q(str(activate))}", "puts `kairos` on PATH"))
    steps += [
        (f"export KAIROS_DATABASE_URL={q(options.database_url)}", "for `kairos keys`"),
        (f"export KAIROS_API_TARGET={q(options.api_target)}", "where `kairos` finds the api"),
        (
            "export KAIROS_API_KEY=$(kairos keys create --tenant demo)",
            "a new API key for tenant demo",
        ),
        (
            "ACCOUNT=$(kairos accounts connect sandbox --handle @demo "
            f"--instance-url {q(options.sandbox_url)})",
            "a sandbox account; keeps its id",
        ),
        (
            'kairos posts create "Hello from Kairos" --account "$ACCOUNT" --at "in 10s"',
            "prints the post id",
        ),
        ("kairos watch", "see it go out (Ctrl-C leaves)"),
        ("kairos posts show <post id>", "its targets and attempts"),
        (f"curl -s {options.sandbox_url}/posts", "what the sandbox platform received"),
    ]
    if options.fakes:
        port = MastodonFake.default_port - FAKES_BASE_PORT + options.fakes_port
        mastodon = f"http://{HOST}:{port}"
        steps += [
            (
                "M=$(kairos accounts connect mastodon --handle @demo@fake --access-token dev "
                f"--instance-url {q(mastodon)})",
                "the Mastodon fake (every platform has one)",
            ),
            (
                'kairos posts create "Hello, fediverse" --account "$M" --at "in 5s"',
                "goes to the fake over HTTP",
            ),
            (f"curl -s {mastodon}/_fake/requests", "what the Mastodon fake received"),
        ]
    # Comments line up, except after the few commands too long to wait for them.
    command_width = max(len(command) for command, _ in steps if len(command) <= 64)
    commands = [f"  {command:<{command_width}}  # {why}" for command, why in steps]
    # How to sign in, above the steps: a person opening the URL first needs a key from them.
    console = [
        f"Open the console at {options.console_url} and sign in with an API key of tenant demo:",
        "`kairos keys create --tenant demo` prints one; the steps below put it in $KAIROS_API_KEY.",
        "",
    ]

    return "\n".join(
        [
            f"{READY_LINE} Data in {options.data_dir} (kept across restarts). "
            "Ctrl-C stops everything.",
            "",
            *table,
            "",
            *(console if any(spec.name == "console" for spec in specs) else []),
            "Try it from another terminal:",
            "",
            *commands,
            "",
        ]
    )

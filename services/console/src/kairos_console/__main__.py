"""`python -m kairos_console` / `kairos-console`: serve the console until SIGTERM or SIGINT."""

from __future__ import annotations

import sys

from kairos_common.runner import run_service
from kairos_console.service import ConsoleService
from kairos_console.settings import ConsoleSettings


def main() -> int:
    """Console-script entry point."""
    return run_service("console", ConsoleSettings.from_env, ConsoleService)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m kairos_scheduler`: run the scheduler until SIGTERM or SIGINT."""

from __future__ import annotations

import sys

from kairos_common.runner import run_service
from kairos_scheduler.service import SchedulerService
from kairos_scheduler.settings import SchedulerSettings


def main() -> int:
    """Console-script entry point."""
    return run_service("scheduler", SchedulerSettings.from_env, SchedulerService)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m kairos_publisher`: run the publisher until SIGTERM or SIGINT."""

from __future__ import annotations

import sys

from kairos_common.runner import run_service
from kairos_publisher.service import PublisherService
from kairos_publisher.settings import PublisherSettings


def main() -> int:
    """Console-script entry point."""
    return run_service("publisher", PublisherSettings.from_env, PublisherService)


if __name__ == "__main__":
    sys.exit(main())

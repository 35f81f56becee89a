"""`python -m kairos_api`: run the api until SIGTERM or SIGINT."""

from __future__ import annotations

import sys

from kairos_api.service import ApiService
from kairos_api.settings import ApiSettings
from kairos_common.runner import run_service


def main() -> int:
    """Console-script entry point."""
    return run_service(
        "api",
        ApiSettings.from_env,
        lambda settings: settings.common.log,
        ApiService,
    )


if __name__ == "__main__":
    sys.exit(main())

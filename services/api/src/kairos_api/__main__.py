"""`python -m kairos_api`: run the api (the default, or `serve`), or an admin command (`--help`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kairos_api import cli


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())

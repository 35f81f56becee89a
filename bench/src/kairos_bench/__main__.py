"""`python -m kairos_bench`: placeholder until the harness lands."""

import sys


def main() -> None:
    sys.exit("kairos-bench: harness not built yet")


if __name__ == "__main__":
    main()

"""`python -m kairos_dev` / `kairos-dev` / `make dev`: run the whole system until Ctrl-C.

Exit status: 0 after a stop asked for by SIGINT, SIGTERM or SIGHUP; 1 when something could not
start or a child failed (the message says which and shows its last lines); 2 on a bad command line.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from kairos_dev.config import DevError, load_dev_env, parse_args, plan_children
from kairos_dev.preflight import check_leftovers, check_ports, lock_data_dir
from kairos_dev.supervisor import SUPERVISOR, Supervisor


def run(argv: Sequence[str] | None = None) -> int:
    """Check, start, supervise and stop; the exit status."""
    options = parse_args(argv)
    try:
        options.data_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_data_dir(options.data_dir)
    except (DevError, OSError) as error:
        print(f"{SUPERVISOR}: error: {error}", file=sys.stderr)
        return 1
    with lock:
        try:
            dev_env = load_dev_env(options.dev_env_path)
            specs = plan_children(options, dev_env)
            check_leftovers(options.pids_path)
            check_ports(specs)
        except DevError as error:
            for line in str(error).splitlines():
                print(f"{SUPERVISOR}: error: {line}", file=sys.stderr)
            return 1
        return asyncio.run(Supervisor(options, specs).run())


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()

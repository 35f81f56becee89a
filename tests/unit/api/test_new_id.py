"""Row ids: time-ordered version 7 UUIDs, unique within and across processes."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

from kairos_api.adapters.orm import new_id


def minted_at(ident: uuid.UUID) -> datetime:
    return datetime.fromtimestamp((ident.int >> 80) / 1000, UTC)


def test_an_id_has_the_version_7_layout_with_its_instant_first() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    ident = new_id()
    after = datetime.now(UTC)

    assert ident.version == 7
    assert ident.variant == uuid.RFC_4122
    assert before <= minted_at(ident) <= after


def test_ids_are_unique_and_later_ones_sort_after() -> None:
    first = [new_id() for _ in range(50_000)]
    time.sleep(0.002)
    second = [new_id() for _ in range(1_000)]

    assert len(set(first + second)) == len(first) + len(second)
    assert max(first) < min(second)
    # The 74 random bits really vary: every bit position takes both values.
    low = [i.int & ((1 << 62) - 1) for i in first[:1000]]
    assert all(any(v >> b & 1 for v in low) and not all(v >> b & 1 for v in low) for b in range(62))


#: Run in a fresh interpreter, single-threaded, so that forking is safe: prints the random parts
#: of the ids the parent and its forked child mint next.
FORK = """
import os, sys
from kairos_api.adapters.orm import new_id

read, write = os.pipe()
pid = os.fork()
ids = [new_id().int & ((1 << 74) - 1) for _ in range(100)]
if pid == 0:
    os.write(write, repr(ids).encode())
    os._exit(0)
os.close(write)
child = eval(os.read(read, 1 << 20))
os.waitpid(pid, 0)
print(len(set(ids)), len(set(child)), len(set(ids) & set(child)))
"""


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORK], capture_output=True, text=True, check=True, timeout=60
    )

    # Had the child kept its parent's generator state, both would draw the same random parts.
    assert done.stdout.split() == ["100", "100", "0"]

"""The refresh loop behind the gauges that need a query: it keeps going through failures, says
so once while they last and once when they end, and stops when asked."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from kairos_common.metrics import refresh_until


async def test_failures_are_logged_once_per_streak_and_the_loop_stops_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopping = asyncio.Event()
    # Round by round: three failures, two successes, one failure, then stop.
    script = [False, False, False, True, True, False]
    rounds: list[int] = []

    async def refresh() -> None:
        rounds.append(len(rounds))
        if len(rounds) == len(script):
            stopping.set()
        if not script[len(rounds) - 1]:
            raise ConnectionError("away")

    with caplog.at_level(logging.INFO, logger="kairos_common.metrics"):
        await asyncio.wait_for(
            refresh_until(timedelta(seconds=0.001), refresh, stopping, "the gauges"), 5.0
        )

    assert len(rounds) == len(script)
    assert [(r.levelname, r.getMessage().partition(";")[0]) for r in caplog.records] == [
        ("WARNING", "refreshing the gauges failed: ConnectionError('away')"),
        ("INFO", "refreshing the gauges works again"),
        ("WARNING", "refreshing the gauges failed: ConnectionError('away')"),
    ]

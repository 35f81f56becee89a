"""Which failed NATS connection attempts get a log line: the first, a change of kind, one per
period; and a reset right after a refusal is not told as NATS being away."""

from __future__ import annotations

from kairos_common.streams import UNREACHABLE, UNREACHABLE_LOG_EVERY, _Unreachable


def test_a_reset_after_a_refusal_is_not_told_as_unreachable() -> None:
    now = [100.0]
    failures = _Unreachable(clock=lambda: now[0])

    told = [failures.should_tell("authentication"), failures.should_tell(UNREACHABLE)]
    now[0] += 1
    told += [failures.should_tell("authentication"), failures.should_tell(UNREACHABLE)]

    assert told == [True, False, False, False]
    assert failures.failures == 4


def test_unreachable_is_told_again_once_refusals_stopped_a_period_ago() -> None:
    now = [100.0]
    failures = _Unreachable(clock=lambda: now[0])
    assert failures.should_tell("authentication")
    now[0] += UNREACHABLE_LOG_EVERY
    assert failures.should_tell(UNREACHABLE)  # the server went away for real
    assert not failures.should_tell(UNREACHABLE)  # then once per period, as before
    assert failures.should_tell("tls")  # a new kind is told at once

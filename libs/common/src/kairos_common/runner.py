"""Process entry point shared by the services: logging, the event loop, signals, exit code.

The event loop is uvloop unless KAIROS_UVLOOP=false: it spends less CPU per I/O call than the
standard loop (13 % less CPU per post in the publisher and 14 % in the api in a 10,000-post
burst, `bench/results/uvloop-2026-12-06/`), and the standard loop stays one setting away should
a library misbehave on uvloop.

Tracing (`kairos_common.tracing`) is set up here, before the service is built, and flushed
after it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from kairos_common import tracing
from kairos_common.grpc.server import Service, run_until_signalled
from kairos_common.logging import configure_logging
from kairos_common.settings import CannotStart, Env, LogSettings, SettingsError

__all__ = ["CannotStart", "run_service"]

log = logging.getLogger(__name__)

S = TypeVar("S")
T = TypeVar("T")


def event_loop_runner(use_uvloop: bool) -> Callable[[Coroutine[Any, Any, T]], T]:
    """`uvloop.run` or `asyncio.run`."""
    if use_uvloop:
        import uvloop

        return uvloop.run
    return asyncio.run


def run_service(name: str, load_settings: Callable[[], S], build: Callable[[S], Service]) -> int:
    """Run a service until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad settings or a setup it
    cannot start with, 1 on a crash.

    Logging is set up first, from the log settings alone, so that even a bad setting is reported
    as one line in the service's own format; bad log settings are reported in the plain one.
    """
    try:
        log_settings = LogSettings.from_env(Env())
    except SettingsError as error:
        configure_logging(name, LogSettings())
        log.error("bad configuration: %s", error)
        return 2
    configure_logging(name, log_settings)
    try:
        run = event_loop_runner(Env().flag("KAIROS_UVLOOP", True))
        service = build(load_settings())
    except SettingsError as error:
        log.error("bad configuration: %s", error)
        return 2
    log.info("starting", extra={"loop": run.__module__.partition(".")[0]})
    try:
        if tracing.start(f"kairos-{name}") is not None:
            log.info("tracing on: spans go out over OTLP")
        run(run_until_signalled(service))
    except CannotStart as error:
        log.error("cannot start: %s", error)
        return 2
    except Exception:
        log.exception("%s crashed", name)
        return 1
    finally:
        tracing.shutdown()  # the spans still queued go out before the process ends
    return 0

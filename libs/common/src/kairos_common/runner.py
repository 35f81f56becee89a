"""Process entry point shared by the services: logging, the event loop, signals, exit code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from kairos_common.grpc.server import Service, run_until_signalled
from kairos_common.logging import configure_logging
from kairos_common.settings import CannotStart, Env, LogSettings, SettingsError

__all__ = ["CannotStart", "run_service"]

log = logging.getLogger(__name__)

S = TypeVar("S")


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
        service = build(load_settings())
    except SettingsError as error:
        log.error("bad configuration: %s", error)
        return 2
    try:
        asyncio.run(run_until_signalled(service))
    except CannotStart as error:
        log.error("cannot start: %s", error)
        return 2
    except Exception:
        log.exception("%s crashed", name)
        return 1
    return 0

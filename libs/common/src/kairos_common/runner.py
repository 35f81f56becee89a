"""Process entry point shared by the services: logging, the event loop, signals, exit code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from kairos_common.grpc.server import Service, run_until_signalled
from kairos_common.logging import configure_logging
from kairos_common.settings import LogSettings, SettingsError

log = logging.getLogger(__name__)

S = TypeVar("S")


class CannotStart(RuntimeError):
    """The service cannot start as it is set up; the message says what to do about it."""


def run_service(
    name: str,
    load_settings: Callable[[], S],
    log_settings: Callable[[S], LogSettings],
    build: Callable[[S], Service],
) -> int:
    """Run a service until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad settings or a setup it
    cannot start with, 1 on a crash."""
    try:
        settings = load_settings()
        configure_logging(name, log_settings(settings))
        service = build(settings)
    except SettingsError as error:
        logging.basicConfig()
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

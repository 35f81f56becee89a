"""Local fakes of the platforms' HTTP APIs: one module per platform, each with a `Fake` class.

`python -m kairos_fakes` serves them all, each on `default_port` (plus an offset): the media
host on BASE_PORT, the platforms above it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kairos_fakes.base import FakeServer

#: The media host's port; every platform fake's default port is above it.
BASE_PORT = 9100


def fake_classes() -> list[type[FakeServer]]:
    """Every module's `Fake`, by name."""
    from kairos_fakes.base import FakeServer

    found: list[type[FakeServer]] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        fake = getattr(module, "Fake", None)
        if isinstance(fake, type) and issubclass(fake, FakeServer):
            found.append(fake)
    return sorted(found, key=lambda f: f.name)


def platform_urls(fakes: Iterable[FakeServer]) -> str:
    """`KAIROS_PLATFORM_URLS` pointing each platform at its running fake."""
    return ",".join(f"{f.name}={f.url}" for f in fakes if f.name != "media")

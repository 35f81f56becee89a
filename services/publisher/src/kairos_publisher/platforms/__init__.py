"""Platform clients: one small module per platform behind the `PlatformClient` interface.

Adding a platform means adding one module here, named after the platform
(`kairos_publisher/platforms/<platform>.py`) with a `create(context) -> PlatformClient`
function, besides its row in the platform catalogue (`kairos_common.platforms`) and its fake
under `tools/fakes`; `registry()` finds the module by name.
"""

from __future__ import annotations

import importlib

from kairos_common.platforms import Platform
from kairos_publisher.platforms.base import PlatformClient, PlatformContext


def registry(context: PlatformContext) -> dict[Platform, PlatformClient]:
    """A client for every platform this build has a module for, sharing one context."""
    clients: dict[Platform, PlatformClient] = {}
    for platform in Platform:
        try:
            module = importlib.import_module(f"{__name__}.{platform.value}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{platform.value}":
                raise
            continue
        clients[platform] = module.create(context)
    return clients

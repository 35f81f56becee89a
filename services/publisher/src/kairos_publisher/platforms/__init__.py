"""Platform clients: one small module per platform behind the `PlatformClient` interface.

Adding a platform means adding one module here (and its fake under tests); `registry()` maps
platform names to clients.
"""

from __future__ import annotations

import httpx

from kairos_common.platforms import Platform
from kairos_publisher.platforms.base import PlatformClient
from kairos_publisher.platforms.sandbox import SandboxClient
from kairos_publisher.platforms.webhook import WebhookClient


def registry(http: httpx.AsyncClient) -> dict[Platform, PlatformClient]:
    """The clients this build can publish with, sharing one HTTP client."""
    return {
        Platform.SANDBOX: SandboxClient(http),
        Platform.WEBHOOK: WebhookClient(http),
    }

"""Which uploaded files a begun attempt carries a presigned URL for: every file for a platform
that pulls media by URL, except a video for one that takes a video's bytes (Telegram, Slack,
Discord), and none for the others."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kairos_api.service_layer.dispatch.begin import _stored_media


class Presigning:
    """A media store that signs every key it is asked for."""

    def __init__(self) -> None:
        self.signed: list[str] = []

    async def presigned_url(self, key: str, expires_in: timedelta) -> str | None:
        self.signed.append(key)
        return f"https://s3.example/{key}?sig"


def row(media_id: str, kind: str) -> list[Any]:
    content_type = "video/mp4" if kind == "video" else "image/png"
    return [media_id, kind, content_type, 10, "ab" * 32, f"media/{media_id}", 360, 640, 1.0]


@pytest.mark.parametrize(
    ("platform", "signed"),
    [
        ("telegram", ["media/i-1"]),
        ("slack", ["media/i-1"]),
        ("discord", ["media/i-1"]),
        ("instagram", ["media/i-1", "media/v-1"]),
        ("x", []),
    ],
)
async def test_a_video_is_presigned_only_for_a_platform_that_pulls_it(
    platform: str, signed: list[str]
) -> None:
    store = Presigning()
    app = SimpleNamespace(media=store, settings=SimpleNamespace(attempt_lease=timedelta(minutes=5)))

    found = await _stored_media(
        cast(Any, app), platform, [row("i-1", "image"), row("v-1", "video")]
    )

    assert store.signed == signed
    assert [bool(m.url) for m in found] == [key in signed for key in ("media/i-1", "media/v-1")]
    assert [m.kind for m in found] == ["image", "video"]

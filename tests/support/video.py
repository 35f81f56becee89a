"""A real video in a media store, named as a begun attempt names it, and a stage that records
what a platform module told it: for the platforms' video tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from kairos_media import FileStore
from kairos_media.probe import VideoInfo, probe_file
from kairos_publisher.media import StoredMedia
from kairos_publisher.platforms.base import PublishOutcome, Result
from support.media import write_video


async def stored_video(
    store: FileStore,
    folder: Path,
    media_id: str = "video-1",
    *,
    width: int = 360,
    height: int = 640,
    seconds: float = 1.0,
    url: str = "",
) -> StoredMedia:
    """An H.264/AAC MP4 (vertical unless told) written, probed and put in `store`."""
    path = write_video(
        folder / f"{media_id}.mp4",
        container="mp4",
        video_codec="h264",
        audio_codec="aac",
        width=width,
        height=height,
        seconds=seconds,
    )
    info = probe_file(path)
    assert isinstance(info, VideoInfo)

    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                yield chunk

    kept = await store.put(f"media/{media_id}", chunks())
    return StoredMedia(
        media_id,
        info.mime_type,
        kept.size,
        kept.sha256,
        kept.key,
        kind="video",
        url=url,
        width=info.width,
        height=info.height,
        duration_seconds=info.duration_seconds,
    )


class RecordingStage:
    """An `AttemptStage` that records the order of what happened: "publishing" when the module
    said it was about to make the post public, ("pause", seconds) for each wait. With
    `refuse=True`, `publishing()` answers as when the api could not record it."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.calls: list[object] = []

    async def publishing(self) -> PublishOutcome | None:
        self.calls.append("publishing")
        if self.refuse:
            return PublishOutcome(Result.RETRYABLE, code="stage", message="not recorded")
        return None

    async def pause(self, seconds: float) -> None:
        """Recorded, and waited for at most 10 ms: tests do not sit out a platform's waits."""
        self.calls.append(("pause", seconds))
        await asyncio.sleep(min(seconds, 0.01))

    @property
    def published_marks(self) -> int:
        return self.calls.count("publishing")

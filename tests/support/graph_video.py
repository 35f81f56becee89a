"""For the Graph platforms' video tests (Facebook, Instagram, Threads pull a video by URL): a
host that serves files from a media store at the URL a presigned one would give, and a stage
that notes how many requests a fake had received when it was told the post goes public."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from kairos_fakes.base import FakeServer
from kairos_media import FileStore
from kairos_publisher.media import StoredMedia
from kairos_publisher.platforms.base import PublishOutcome
from support.video import RecordingStage


class StoreHost:
    """GET /<storage key> streams that file from the store, as an S3 presigned URL would;
    `status` set makes every GET answer it instead (a host that fails)."""

    def __init__(self, store: FileStore) -> None:
        self.store = store
        self.status = 0
        self.gets = 0
        self.app = web.Application()
        self.app.router.add_get("/{key:.+}", self.get)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def presigned(self, media: StoredMedia) -> StoredMedia:
        """`media` with the URL this host serves it at."""
        return replace(media, url=f"{self.url}/{media.storage_key}?X-Amz-Signature=test")

    async def get(self, request: web.Request) -> web.StreamResponse:
        self.gets += 1
        if self.status:
            return web.Response(status=self.status, text="refused by the test")
        response = web.StreamResponse(headers={"content-type": "video/mp4"})
        await response.prepare(request)
        async for chunk in self.store.read(request.match_info["key"]):
            await response.write(chunk)
        await response.write_eof()
        return response


class OrderStage(RecordingStage):
    """A RecordingStage that also keeps, for each `publishing()`, how many requests `fake` had
    received by then: the request after them must be the one that publishes."""

    def __init__(self, fake: FakeServer, *, refuse: bool = False) -> None:
        super().__init__(refuse=refuse)
        self.fake = fake
        self.requests_before: list[int] = []

    async def publishing(self) -> PublishOutcome | None:
        self.requests_before.append(len(self.fake.requests))
        return await super().publishing()

    @property
    def pauses(self) -> list[float]:
        return [call[1] for call in self.calls if isinstance(call, tuple)]

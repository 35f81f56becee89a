"""A media host: images to download, oversize and mislabelled files, and redirects.

- `GET /images/<name>.png|.jpg|.gif`: a small valid image of that type.
- `GET /big.png?bytes=N`: a PNG of N bytes (a valid header, padded).
- `GET /fake.png`: text served as `image/png`, to test sniffing.
- `GET /redirect?to=<url>`: a 302 to `to`.
"""

from __future__ import annotations

import struct
import zlib
from typing import ClassVar

from aiohttp import web

from kairos_fakes import BASE_PORT
from kairos_fakes.base import FakeServer


def png(width: int = 2, height: int = 2) -> bytes:
    """A valid RGB PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x1f\x8f\xcf" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


#: The start of a JPEG (SOI and a JFIF APP0 segment) and its end; enough for type sniffing.
JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + b"\x00" * 64
    + b"\xff\xd9"
)
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00"
    b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


class MediaHost(FakeServer):
    name = "media"
    default_port: ClassVar[int] = BASE_PORT

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/images/{name}", self.image)
        router.add_get("/big.png", self.big)
        router.add_get("/fake.png", self.fake)
        router.add_get("/redirect", self.redirect)

    def image_url(self, name: str = "photo.png") -> str:
        return f"{self.url}/images/{name}"

    async def image(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name.endswith(".png"):
            return web.Response(body=png(), content_type="image/png")
        if name.endswith((".jpg", ".jpeg")):
            return web.Response(body=JPEG, content_type="image/jpeg")
        if name.endswith(".gif"):
            return web.Response(body=GIF, content_type="image/gif")
        return web.Response(status=404, text="no such image")

    async def big(self, request: web.Request) -> web.Response:
        size = int(request.query.get("bytes", "2000000"))
        head = png()
        padding = b"\x00" * max(0, size - len(head))
        return web.Response(body=head + padding, content_type="image/png")

    async def fake(self, request: web.Request) -> web.Response:
        return web.Response(body=b"<html>not an image</html>", content_type="image/png")

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])


Fake = MediaHost

"""Real media made on the spot with PyAV (FFmpeg's encoders), and byte streams to store."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import av
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

MIB = 1024 * 1024


def write_video(
    path: Path,
    *,
    container: str,
    video_codec: str,
    audio_codec: str | None,
    width: int,
    height: int,
    fps: int = 24,
    seconds: float = 1.0,
    rotation: int = 0,
) -> Path:
    """A short video of changing grey frames, with a second of silence when `audio_codec` is set;
    `rotation` (counter-clockwise degrees, as FFmpeg has it) goes in the display matrix."""
    with av.open(str(path), "w", format=container) as output:
        video = output.add_stream(video_codec, rate=fps)
        assert isinstance(video, VideoStream)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        audio = output.add_stream(audio_codec, rate=48000) if audio_codec else None
        assert audio is None or isinstance(audio, AudioStream)
        for index in range(round(fps * seconds)):
            output.mux(video.encode(_filled(width, height, index * 8 % 256)))
        output.mux(video.encode())
        if audio is not None:
            samples = audio.codec_context.frame_size or 1024
            for start in range(0, round(48000 * seconds), samples):
                frame = av.AudioFrame(format="fltp", layout="mono", samples=samples)
                frame.planes[0].update(bytes(frame.planes[0].buffer_size))
                frame.sample_rate, frame.pts = 48000, start
                output.mux(audio.encode(frame))
            output.mux(audio.encode())
    return path


def write_image(path: Path, *, container: str, codec: str, pixel_format: str) -> Path:
    """A 64x48 image: `container` image2 with codec png or mjpeg, webp, or gif."""
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=1)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pixel_format
        output.mux(stream.encode(_filled(64, 48, 0).reformat(format=pixel_format)))
        output.mux(stream.encode())
    return path


def _filled(width: int, height: int, grey: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "rgb24")
    frame.planes[0].update(bytes([grey]) * frame.planes[0].buffer_size)
    return frame


def random_chunks(seed: int, count: int, size: int = MIB) -> list[bytes]:
    """`count` chunks of `size` random bytes, the same for the same seed."""
    generator = random.Random(seed)
    return [generator.randbytes(size) for _ in range(count)]


async def stream_of(
    seed: int, count: int, size: int = MIB, *, fail_after: int | None = None
) -> AsyncIterator[bytes]:
    """The chunks of `random_chunks(seed, count, size)`, made one at a time as they are asked
    for; raises `UploadBroke` after `fail_after` chunks when it is set."""
    generator = random.Random(seed)
    for index in range(count):
        if index == fail_after:
            raise UploadBroke(f"the client went away after {index} chunks")
        yield generator.randbytes(size)


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    """All the chunks, joined (for small reads only)."""
    return b"".join([chunk async for chunk in chunks])


class UploadBroke(Exception):
    """What a test's upload stream raises midway."""

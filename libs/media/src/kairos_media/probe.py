"""What a media file is, told from its bytes: an image (JPEG, PNG, WebP), a GIF or a video
(MP4/MOV, WebM), with its dimensions and, for a video, its duration, codecs, frame rate, aspect
ratio and bit rate. Anything else is refused with `UnsupportedMedia`. The file's name and the type
a client claimed play no part.

FFmpeg does the reading, through PyAV (whose wheels bundle FFmpeg, so nothing is installed beside
the Python package). The file's first bytes pick the one FFmpeg demuxer that may read it, from
the short list of formats Kairos takes: FFmpeg's own guessing could pick any of its demuxers,
including playlist ones (HLS, concat) that open further files or URLs named inside the upload.

Probing reads a file on disk (`MediaStore.local_file` gives one), through FFmpeg's buffered I/O:
the container's headers and a video's first frame, never the whole file. A video's first frame
is decoded, which proves the stream decodes and gives its rotation (phones store portrait video
as landscape frames plus a rotation); images are not decoded. Files whose frames have more than
`MAX_PIXELS` pixels are refused before any frame is decoded, so a small file cannot make the
prober allocate gigabytes.

The calls block: `probe` runs `probe_file` in a worker thread.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from kairos_common.errors import FieldViolation, InvalidArgument

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

#: Most pixels in one frame or image: 8K video (7680 x 4320) and any camera's photo fit.
MAX_PIXELS = 8192 * 4320
#: How many leading bytes pick the demuxer.
_HEAD_SIZE = 16
#: FFmpeg's AV_TIME_BASE (`av.time_base`): a container's duration is in its units, microseconds.
_TIME_BASE = 1_000_000
#: Codecs WebM allows; a Matroska file with others is a Matroska file, not WebM.
_WEBM_VIDEO = frozenset({"vp8", "vp9", "av1"})
_WEBM_AUDIO = frozenset({"vorbis", "opus"})
_SUPPORTED = "JPEG, PNG, WebP, GIF, MP4, MOV or WebM"


class MediaKind(enum.StrEnum):
    """What a file is to a platform."""

    IMAGE = "image"
    GIF = "gif"
    VIDEO = "video"


class UnsupportedMedia(InvalidArgument):
    """The file is not an image or video Kairos takes; the message says what was found."""

    def __init__(self, description: str) -> None:
        super().__init__(f"file: {description}", [FieldViolation("file", description)])


@dataclass(frozen=True)
class ImageInfo:
    """A still image or a GIF."""

    #: IMAGE or GIF.
    kind: MediaKind
    #: jpeg, png, webp or gif.
    format: str
    mime_type: str
    width: int
    height: int


@dataclass(frozen=True)
class VideoInfo:
    """A video, as it is displayed (width and height after its rotation)."""

    #: mp4, mov or webm.
    container: str
    mime_type: str
    #: Playing time in seconds.
    duration_seconds: float
    #: Displayed width and height, in (square) pixels: rotation and non-square pixels applied.
    width: int
    height: int
    #: Displayed width / height, reduced (9/16 for a vertical phone video).
    aspect_ratio: Fraction
    #: Clockwise degrees the player turns the stored frames by: 0, 90, 180 or 270.
    rotation: int
    #: FFmpeg's codec names: h264, hevc, vp9, av1 ... and aac, opus ...; None without audio.
    video_codec: str
    audio_codec: str | None
    #: Average frames per second; None when the file does not tell.
    frame_rate: Fraction | None
    #: Bits per second over the whole file; None when the file does not tell.
    bit_rate: int | None

    kind: ClassVar[MediaKind] = MediaKind.VIDEO


MediaInfo = ImageInfo | VideoInfo

# The leading bytes of each format taken, and the FFmpeg demuxer that reads it.
_IMAGE_DEMUXERS = {
    "png_pipe": ("png", "image/png"),
    "jpeg_pipe": ("jpeg", "image/jpeg"),
    "webp_pipe": ("webp", "image/webp"),
    "gif": ("gif", "image/gif"),
}
#: ISO base media (MP4) and QuickTime files start with a box: 4 bytes of size, then its type.
_MOV_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"})


def demuxer_for(head: bytes) -> str | None:
    """The FFmpeg demuxer for a file starting with `head`, or None for a format not taken."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png_pipe"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg_pipe"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp_pipe"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[4:8] in _MOV_FIRST_BOXES:
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska, of which WebM is a profile
        return "matroska"
    return None


async def probe(path: Path) -> MediaInfo:
    """`probe_file` in a worker thread."""
    return await asyncio.to_thread(probe_file, path)


def probe_file(path: Path) -> MediaInfo:
    """What the file at `path` is; `UnsupportedMedia` when it is not an image or video taken."""
    # PyAV (FFmpeg, ~20 MiB) is loaded by the first probe, not by every process importing this.
    import av
    import av.error

    with path.open("rb") as file:
        demuxer = demuxer_for(file.read(_HEAD_SIZE))
        if demuxer is None:
            raise UnsupportedMedia(f"is not a supported image or video ({_SUPPORTED})")
        file.seek(0)
        try:
            # A file object, not the path: FFmpeg reads through it and sees no file name.
            # max_pixels also holds while FFmpeg reads the headers, which decodes an image.
            options = {"max_pixels": str(MAX_PIXELS)}
            with av.open(file, "r", format=demuxer, options=options) as container:
                return _describe(container, demuxer)
        except av.error.FFmpegError as error:
            raise UnsupportedMedia(
                f"is not a readable image or video ({_SUPPORTED}): {error.strerror}"
            ) from None


def _describe(container: InputContainer, demuxer: str) -> MediaInfo:
    if not container.streams.video:
        raise UnsupportedMedia(f"has no picture ({_SUPPORTED})")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        # Also what FFmpeg leaves when a frame's header promises more than MAX_PIXELS pixels.
        raise UnsupportedMedia(f"has no picture size of at most {MAX_PIXELS} pixels")
    if width * height > MAX_PIXELS:
        raise UnsupportedMedia(f"is {width}x{height} pixels, more than {MAX_PIXELS} in all")
    if demuxer in _IMAGE_DEMUXERS:
        name, mime_type = _IMAGE_DEMUXERS[demuxer]
        kind = MediaKind.GIF if name == "gif" else MediaKind.IMAGE
        return ImageInfo(kind=kind, format=name, mime_type=mime_type, width=width, height=height)
    return _describe_video(container, stream, demuxer)


def _describe_video(container: InputContainer, stream: VideoStream, demuxer: str) -> VideoInfo:
    video_codec = stream.codec_context.name
    audio = container.streams.audio
    audio_codec = audio[0].codec_context.name if audio else None
    if demuxer == "matroska":
        if video_codec not in _WEBM_VIDEO or audio_codec not in (_WEBM_AUDIO | {None}):
            raise UnsupportedMedia(
                f"is a Matroska file with {video_codec}/{audio_codec or 'no audio'}, not WebM "
                "(VP8, VP9 or AV1 with Vorbis or Opus)"
            )
        container_name, mime_type = "webm", "video/webm"
    elif container.metadata.get("major_brand", "").startswith("qt"):
        container_name, mime_type = "mov", "video/quicktime"
    else:
        container_name, mime_type = "mp4", "video/mp4"
    frame = next(container.decode(stream), None)
    if frame is None:
        raise UnsupportedMedia("is a video without a single decodable frame")
    # FFmpeg gives the angle counter-clockwise; players and people speak clockwise.
    rotation = -frame.rotation % 360
    pixel_aspect = stream.sample_aspect_ratio or Fraction(1)
    shown_width = round(stream.codec_context.width * pixel_aspect)
    shown_height = stream.codec_context.height
    if rotation in (90, 270):
        shown_width, shown_height = shown_height, shown_width
    return VideoInfo(
        container=container_name,
        mime_type=mime_type,
        duration_seconds=_duration_seconds(container, stream),
        width=shown_width,
        height=shown_height,
        aspect_ratio=Fraction(shown_width, shown_height),
        rotation=rotation,
        video_codec=video_codec,
        audio_codec=audio_codec,
        frame_rate=stream.average_rate or stream.guessed_rate,
        bit_rate=container.bit_rate or None,
    )


def _duration_seconds(container: InputContainer, stream: VideoStream) -> float:
    if container.duration is not None and container.duration > 0:
        return container.duration / _TIME_BASE
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    raise UnsupportedMedia("is a video whose duration cannot be told")

"""Probing tells images, GIFs and videos apart by their bytes, describes them as platforms need,
and refuses everything else."""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import pytest

from kairos_media import ImageInfo, MediaKind, UnsupportedMedia, VideoInfo, probe_file
from kairos_media.probe import probe
from support.media import write_image, write_video
from support.media_memory import measure_in_child


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


async def test_a_vertical_h264_mp4_with_aac(media: Path) -> None:
    path = write_video(
        media / "clip.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec="aac",
        width=180,
        height=320,
        seconds=1.5,
    )

    info = await probe(path)

    assert isinstance(info, VideoInfo)
    assert info.kind is MediaKind.VIDEO
    assert (info.container, info.mime_type) == ("mp4", "video/mp4")
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height, info.aspect_ratio) == (180, 320, Fraction(9, 16))
    assert info.duration_seconds == pytest.approx(1.5, abs=0.05)
    assert info.frame_rate == 24
    assert info.rotation == 0
    assert info.bit_rate is not None
    assert info.bit_rate > 0


def test_a_vp9_webm_with_opus(media: Path) -> None:
    path = write_video(
        media / "clip.webm",
        container="webm",
        video_codec="libvpx-vp9",
        audio_codec="libopus",
        width=320,
        height=240,
    )

    info = probe_file(path)

    assert isinstance(info, VideoInfo)
    assert (info.container, info.mime_type) == ("webm", "video/webm")
    assert (info.video_codec, info.audio_codec) == ("vp9", "opus")
    assert (info.width, info.height, info.aspect_ratio) == (320, 240, Fraction(4, 3))
    assert info.duration_seconds == pytest.approx(1.0, abs=0.05)


def test_a_quicktime_movie_without_sound(media: Path) -> None:
    path = write_video(
        media / "clip.mov",
        container="mov",
        video_codec="libx264",
        audio_codec=None,
        width=320,
        height=240,
    )

    info = probe_file(path)

    assert isinstance(info, VideoInfo)
    assert (info.container, info.mime_type, info.audio_codec) == ("mov", "video/quicktime", None)


def test_a_rotated_phone_video_is_described_as_it_is_shown(media: Path) -> None:
    # Stored landscape, shown portrait: what a phone held upright records.
    path = write_video(
        media / "phone.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec=None,
        width=320,
        height=180,
        seconds=0.5,
        rotation=-90,
    )

    info = probe_file(path)

    assert isinstance(info, VideoInfo)
    assert info.rotation == 90
    assert (info.width, info.height, info.aspect_ratio) == (180, 320, Fraction(9, 16))


@pytest.mark.parametrize(
    ("container", "codec", "pixel_format", "kind", "name", "mime_type"),
    [
        ("image2", "png", "rgb24", MediaKind.IMAGE, "png", "image/png"),
        ("image2", "mjpeg", "yuvj420p", MediaKind.IMAGE, "jpeg", "image/jpeg"),
        ("webp", "libwebp", "yuv420p", MediaKind.IMAGE, "webp", "image/webp"),
        ("gif", "gif", "rgb8", MediaKind.GIF, "gif", "image/gif"),
    ],
)
def test_images_and_gifs(
    media: Path,
    container: str,
    codec: str,
    pixel_format: str,
    kind: MediaKind,
    name: str,
    mime_type: str,
) -> None:
    # A misleading name on purpose: only the bytes count.
    path = write_image(
        media / f"{name}.mp4", container=container, codec=codec, pixel_format=pixel_format
    )

    info = probe_file(path)

    assert info == ImageInfo(kind=kind, format=name, mime_type=mime_type, width=64, height=48)


def test_a_video_named_like_an_image_is_a_video(media: Path) -> None:
    path = write_video(
        media / "really-a-video.png",
        container="mp4",
        video_codec="libx264",
        audio_codec=None,
        width=64,
        height=64,
        seconds=0.25,
    )

    assert isinstance(probe_file(path), VideoInfo)


def test_a_text_file_named_mp4_is_refused(media: Path) -> None:
    path = media / "notes.mp4"
    path.write_text("These are my notes, not a video.\n" * 20)

    with pytest.raises(UnsupportedMedia, match="not a supported image or video") as raised:
        probe_file(path)
    assert raised.value.violations[0].field == "file"


def test_a_truncated_video_is_refused(media: Path) -> None:
    whole = write_video(
        media / "whole.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec=None,
        width=64,
        height=64,
        seconds=0.5,
    )
    cut = media / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:600])  # starts like an MP4, ends before its index

    with pytest.raises(UnsupportedMedia, match="not a readable image or video"):
        probe_file(cut)


def test_matroska_with_other_codecs_is_not_webm(media: Path) -> None:
    path = write_video(
        media / "clip.mkv",
        container="matroska",
        video_codec="libx264",
        audio_codec=None,
        width=64,
        height=64,
        seconds=0.25,
    )

    with pytest.raises(UnsupportedMedia, match="not WebM"):
        probe_file(path)


def test_sound_without_picture_is_refused(media: Path) -> None:
    path = media / "voice.m4a"
    with av.open(str(path), "w", format="mp4") as output:
        audio = output.add_stream("aac", rate=48000)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        frame.planes[0].update(bytes(frame.planes[0].buffer_size))
        frame.sample_rate, frame.pts = 48000, 0
        output.mux(audio.encode(frame))
        output.mux(audio.encode())

    with pytest.raises(UnsupportedMedia, match="has no picture"):
        probe_file(path)


def _png_bomb(path: Path, side: int) -> Path:
    """A valid greyscale PNG of side x side black pixels: a few hundred KiB that decode to
    side² bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    packer = zlib.compressobj(9)
    rows = b"".join(packer.compress(bytes(side + 1)) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )
    return path


def test_a_decompression_bomb_is_refused_without_decoding_it(media: Path) -> None:
    bomb = _png_bomb(media / "bomb.png", side=16_000)  # 256 MB of pixels
    assert bomb.stat().st_size < 1_000_000

    # In a process of its own, so that its peak memory is the probe's alone.
    outcome = measure_in_child("probe", str(bomb))

    assert "pixels" in outcome["refused"]
    assert outcome["growth_mib"] < 64, outcome

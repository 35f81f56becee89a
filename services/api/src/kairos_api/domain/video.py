"""Whether an uploaded video suits a target's platform, by the catalogue's `VideoRules`.

The api probed the file when it was uploaded (`kairos_media.probe`), so a post naming it is
checked when it is created or edited, like its text: a violation names the file's field and the
target, says what the file is and what the platform takes, before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from kairos_common.platforms import VideoRules

_CONTAINERS = {"video/mp4": "MP4", "video/quicktime": "QuickTime (MOV)", "video/webm": "WebM"}


@dataclass(frozen=True)
class VideoFacts:
    """What the probe found of one uploaded video."""

    content_type: str
    size: int
    width: int
    height: int
    duration_seconds: float
    video_codec: str
    audio_codec: str
    frame_rate: float | None


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.1f} MiB"


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:g} minutes" if value % 60 == 0 else f"{value:,.1f} s"
    return f"{value:g} s"


def _ratio(value: float) -> str:
    return f"{value:.3g}"


def problems(video: VideoFacts, rules: VideoRules, platform: str) -> list[str]:
    """What `platform` would refuse of the video, each as a sentence; [] when it suits."""
    takes = f"{platform} takes {rules.what}"
    found: list[str] = []
    if video.content_type not in rules.types:
        kinds = ", ".join(sorted(_CONTAINERS.get(t, t) for t in rules.types))
        found.append(
            f"is {_CONTAINERS.get(video.content_type, video.content_type)}; {takes} as {kinds}"
        )
    if video.size < rules.min_bytes:
        found.append(f"is {video.size:,} bytes; {takes} of at least {rules.min_bytes:,} bytes")
    if video.size > rules.max_bytes:
        found.append(f"is {_mib(video.size)}; {takes} of at most {_mib(rules.max_bytes)}")
    if video.duration_seconds > rules.max_seconds:
        found.append(
            f"is {video.duration_seconds:,.1f} s long; {takes} of at most "
            f"{_seconds(rules.max_seconds)}"
        )
    if video.duration_seconds < rules.min_seconds:
        found.append(
            f"is {video.duration_seconds:,.1f} s long; {takes} of at least "
            f"{_seconds(rules.min_seconds)}"
        )
    if rules.video_codecs is not None and video.video_codec not in rules.video_codecs:
        found.append(
            f"has {video.video_codec} pictures; {takes} in {', '.join(sorted(rules.video_codecs))}"
        )
    if (
        rules.audio_codecs is not None
        and video.audio_codec
        and video.audio_codec not in rules.audio_codecs
    ):
        found.append(
            f"has {video.audio_codec} sound; {takes} with {', '.join(sorted(rules.audio_codecs))}"
        )
    aspect = video.width / video.height if video.height else 0.0
    size = f"{video.width}x{video.height}"
    if rules.min_aspect is not None and aspect < rules.min_aspect - 1e-3:
        found.append(
            f"is {size} (width/height {_ratio(aspect)}); {takes} no narrower than "
            f"{_ratio(rules.min_aspect)}"
        )
    if rules.max_aspect is not None and aspect > rules.max_aspect + 1e-3:
        found.append(
            f"is {size} (width/height {_ratio(aspect)}); {takes} no wider than "
            f"{_ratio(rules.max_aspect)}"
        )
    for value, low, high, what in (
        (video.width, rules.min_width, rules.max_width, "wide"),
        (video.height, rules.min_height, rules.max_height, "high"),
    ):
        if low is not None and value < low:
            found.append(f"is {value} pixels {what}; {takes} at least {low} pixels {what}")
        if high is not None and value > high:
            found.append(f"is {value} pixels {what}; {takes} at most {high} pixels {what}")
    if rules.max_pixels is not None and video.width * video.height > rules.max_pixels:
        found.append(
            f"is {size} ({video.width * video.height:,} pixels); {takes} of at most "
            f"{rules.max_pixels:,} pixels"
        )
    if (
        rules.max_frame_rate is not None
        and video.frame_rate is not None
        and video.frame_rate > rules.max_frame_rate + 0.01
    ):
        found.append(
            f"has {video.frame_rate:g} frames a second; {takes} of at most {rules.max_frame_rate:g}"
        )
    return found

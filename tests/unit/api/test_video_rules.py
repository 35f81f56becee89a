"""domain.video: what a platform's VideoRules refuse of a probed video, each in a sentence that
says what the file is and what the platform takes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kairos_api.domain.video import VideoFacts, problems
from kairos_common import platforms
from kairos_common.platforms import CATALOGUE, Platform, VideoRules, video_rules

VERTICAL = VideoFacts(
    content_type="video/mp4",
    size=20 * 1024 * 1024,
    width=1080,
    height=1920,
    duration_seconds=30.0,
    video_codec="h264",
    audio_codec="aac",
    frame_rate=30.0,
)
RULES = VideoRules(
    max_bytes=100 * 1024 * 1024,
    max_seconds=180,
    min_seconds=3,
    video_codecs=frozenset({"h264", "hevc"}),
    audio_codecs=frozenset({"aac"}),
    min_aspect=9 / 16,
    max_aspect=1.0,
    min_width=360,
    max_width=1920,
    max_height=1920,
    max_frame_rate=60,
    what="a Short",
)


def test_a_video_that_suits_has_no_problems() -> None:
    assert problems(VERTICAL, RULES, "YouTube") == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"duration_seconds": 1200.0},
            "is 1,200.0 s long; YouTube takes a Short of at most 3 minutes",
        ),
        ({"duration_seconds": 1.5}, "is 1.5 s long; YouTube takes a Short of at least 3 s"),
        ({"size": 3 * 1024**3}, "is 3,072.0 MiB; YouTube takes a Short of at most 100.0 MiB"),
        ({"content_type": "video/webm"}, "is WebM; YouTube takes a Short as MP4, QuickTime (MOV)"),
        ({"video_codec": "vp9"}, "has vp9 pictures; YouTube takes a Short in h264, hevc"),
        ({"audio_codec": "opus"}, "has opus sound; YouTube takes a Short with aac"),
        (
            {"width": 1920, "height": 1080},
            "is 1920x1080 (width/height 1.78); YouTube takes a Short no wider than 1",
        ),
        (
            {"width": 400, "height": 1000},
            "is 400x1000 (width/height 0.4); YouTube takes a Short no narrower than 0.562",
        ),
        ({"frame_rate": 120.0}, "has 120 frames a second; YouTube takes a Short of at most 60"),
    ],
)
def test_each_rule_names_what_the_file_is_and_what_is_taken(
    change: dict[str, object], expected: str
) -> None:
    assert problems(replace(VERTICAL, **change), RULES, "YouTube") == [expected]  # type: ignore[arg-type]


def test_the_pixel_count_is_bounded_whichever_way_up() -> None:
    rules = VideoRules(max_bytes=10**9, max_seconds=300, max_pixels=3840 * 2160)
    for width, height in ((3840, 2160), (2160, 3840)):
        assert problems(replace(VERTICAL, width=width, height=height), rules, "M") == []
    assert problems(replace(VERTICAL, width=4096, height=2160), rules, "M") == [
        "is 4096x2160 (8,847,360 pixels); M takes a video of at most 8,294,400 pixels"
    ]


def test_a_silent_video_is_taken_whatever_the_sound_codecs() -> None:
    assert problems(replace(VERTICAL, audio_codec=""), RULES, "YouTube") == []


def test_pixel_bounds_are_checked_both_ways() -> None:
    found = problems(replace(VERTICAL, width=200, height=356), RULES, "P")
    assert "is 200 pixels wide; P takes a Short at least 360 pixels wide" in found
    found = problems(replace(VERTICAL, width=1080, height=2400), RULES, "P")
    assert "is 2400 pixels high; P takes a Short at most 1920 pixels high" in found


def test_rules_by_setting_replace_the_platforms_own(monkeypatch: pytest.MonkeyPatch) -> None:
    story = replace(RULES, max_seconds=60, what="a story")
    info = replace(
        CATALOGUE[Platform.SANDBOX], video=RULES, video_by_setting=(("kind", "story", story),)
    )
    monkeypatch.setattr(platforms, "CATALOGUE", {**CATALOGUE, Platform.SANDBOX: info})
    assert video_rules(Platform.SANDBOX, {"kind": "story"}) is story
    assert video_rules(Platform.SANDBOX, {"kind": "reel"}) is RULES
    assert video_rules(Platform.SANDBOX, {}) is RULES


def test_every_platform_that_takes_video_takes_a_real_container() -> None:
    # Every platform takes a video now (the last ones: Kairos's own targets).
    assert {p for p, info in CATALOGUE.items() if info.video is None} == set()
    for platform, info in CATALOGUE.items():
        for rules in [info.video, *(r for _, _, r in info.video_by_setting)]:
            if rules is None:
                continue
            assert rules.types, platform
            assert rules.types <= {"video/mp4", "video/quicktime", "video/webm"}, platform
            assert rules.max_bytes > 0, platform
            assert rules.max_seconds > rules.min_seconds, platform


def test_a_video_only_platform_refuses_text_alone_and_media_by_url() -> None:
    from kairos_api.domain.limits import validate_content

    alone = validate_content(Platform.YOUTUBE, "Just words", [])
    assert [(v.field, v.description) for v in alone] == [
        ("media_ids", "YouTube needs an uploaded video: it cannot publish text alone")
    ]
    by_url = validate_content(Platform.YOUTUBE, "A clip", ["https://cdn.example/clip.mp4"])
    assert ("media_urls", "YouTube takes one uploaded video (media_ids), not media by URL") in [
        (v.field, v.description) for v in by_url
    ]
    assert validate_content(Platform.YOUTUBE, "A clip", [], uploads=1) == []

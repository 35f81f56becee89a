"""The video rows of the Graph platforms: which rules a target gets, by its settings."""

from __future__ import annotations

from kairos_common.platforms import CATALOGUE, Platform, SettingKind, video_rules


def test_an_instagram_target_gets_reel_rules_unless_its_setting_asks_for_a_story() -> None:
    reel = video_rules(Platform.INSTAGRAM, {})
    story = video_rules(Platform.INSTAGRAM, {"media_type": "STORIES"})
    assert reel is not None
    assert story is not None
    assert (reel.min_seconds, reel.max_seconds, reel.max_bytes) == (3, 900, 300_000_000)
    assert (story.min_seconds, story.max_seconds, story.max_bytes) == (3, 60, 100_000_000)
    assert (reel.min_aspect, story.min_aspect) == (0.01, 0.1)
    assert video_rules(Platform.INSTAGRAM, {"media_type": "REELS"}) == reel


def test_the_instagram_media_type_setting_is_a_choice_of_reels_or_stories() -> None:
    setting = CATALOGUE[Platform.INSTAGRAM].settings["media_type"]
    assert setting.kind == SettingKind.CHOICE
    assert setting.choices == ("REELS", "STORIES")
    assert all(len(choice) <= setting.max_chars for choice in setting.choices)


def test_threads_and_facebook_take_one_kind_of_video() -> None:
    threads = video_rules(Platform.THREADS, {"media_type": "STORIES"})
    facebook = video_rules(Platform.FACEBOOK, {})
    assert threads is not None
    assert facebook is not None
    assert (threads.max_seconds, threads.max_bytes) == (300, 1_000_000_000)
    assert threads.video_codecs == frozenset({"h264", "hevc"})
    assert (facebook.max_seconds, facebook.max_bytes) == (240 * 60, 10_000_000_000)

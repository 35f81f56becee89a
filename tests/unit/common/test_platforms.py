"""The platform catalogue: every platform has everything the services need to publish to it."""

from __future__ import annotations

import importlib.util

import pytest

from kairos.posts.v1 import posts_pb2
from kairos_common.platforms import CATALOGUE, Platform


@pytest.mark.parametrize("platform", list(Platform))
def test_every_platform_has_a_row_a_wire_value_a_publisher_module_and_a_fake(
    platform: Platform,
) -> None:
    assert platform in CATALOGUE, "no row in kairos_common.platforms.CATALOGUE"
    wire_values = posts_pb2.Platform.DESCRIPTOR.values_by_name
    assert f"PLATFORM_{platform.name}" in wire_values, "no value in the posts proto's Platform"
    module = f"kairos_publisher.platforms.{platform.value}"
    assert importlib.util.find_spec(module) is not None, f"no publisher module {module}"
    if not CATALOGUE[platform].own:
        fake = f"kairos_fakes.{platform.value}"
        assert importlib.util.find_spec(fake) is not None, f"no fake {fake}"


def test_every_wire_value_names_a_platform() -> None:
    named = {value.name.removeprefix("PLATFORM_") for value in posts_pb2.Platform.DESCRIPTOR.values}
    assert named - {"UNSPECIFIED"} == {platform.name for platform in Platform}


@pytest.mark.parametrize("platform", list(Platform))
def test_a_platform_takes_a_videos_bytes_only_where_it_pulls_by_url_and_takes_video(
    platform: Platform,
) -> None:
    info = CATALOGUE[platform]
    if info.uploads_video:
        assert info.pulls_media_by_url, "uploads_video only says something beside pulling by URL"
        assert info.video is not None, "a platform that takes a video's bytes takes video"
    for kind in ("image", "gif"):
        assert info.pulls_by_url(kind) == info.pulls_media_by_url
    assert info.pulls_by_url("video") == (info.pulls_media_by_url and not info.uploads_video)


def test_telegram_slack_and_discord_are_sent_a_videos_bytes_and_pull_images_by_url() -> None:
    for platform in (Platform.TELEGRAM, Platform.SLACK, Platform.DISCORD):
        assert CATALOGUE[platform].pulls_by_url("image")
        assert not CATALOGUE[platform].pulls_by_url("video")

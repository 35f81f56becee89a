"""`kairos media ...` against the in-process api (PostgreSQL and SQLite): upload a real image and
a video, see them listed and shown, delete one; a file that is no media is refused by the api."""

from __future__ import annotations

from pathlib import Path

from integration.cli.conftest import Kairos

from support.media import write_image, write_video


async def test_upload_list_show_and_delete(kairos: Kairos, tmp_path: Path) -> None:
    image = write_image(
        tmp_path / "cover.png", container="image2", codec="png", pixel_format="rgb24"
    )
    video = write_video(
        tmp_path / "clip.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec="aac",
        width=320,
        height=180,
    )

    image_id = (await kairos.ok("media", "upload", str(image))).stdout.strip()
    uploaded = (await kairos.ok("--json", "media", "upload", str(video), "--name", "trip")).json()
    listed = await kairos.ok("media", "list")
    videos = (await kairos.ok("--json", "media", "list", "--kind", "video")).json()
    shown = await kairos.ok("media", "show", uploaded["id"])

    assert uploaded["kind"] == "video"
    assert (uploaded["file_name"], uploaded["width"], uploaded["height"]) == ("trip", 320, 180)
    assert image_id in listed.stdout
    assert "cover.png" in listed.stdout
    assert [m["id"] for m in videos["media"]] == [uploaded["id"]]
    assert "h264 + aac" in shown.stdout
    assert "video/mp4" in shown.stdout

    deleted = await kairos.ok("media", "delete", image_id)
    assert deleted.stdout == f"media {image_id} deleted\n"
    after = (await kairos.ok("--json", "media", "list")).json()
    assert [m["id"] for m in after["media"]] == [uploaded["id"]]


async def test_a_file_that_is_no_media_is_refused(kairos: Kairos, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)

    ran = await kairos("media", "upload", str(text))

    assert ran.code != 0
    assert "file" in ran.stderr
    assert "not a supported image or video" in ran.stderr
    assert (await kairos.ok("--json", "media", "list")).json() == {"media": []}


async def test_a_post_names_an_upload_which_cannot_be_deleted_while_it_may_publish(
    kairos: Kairos, tmp_path: Path
) -> None:
    image = write_image(tmp_path / "a.png", container="image2", codec="png", pixel_format="rgb24")
    media_id = (await kairos.ok("media", "upload", str(image))).stdout.strip()
    account = (
        await kairos.ok("accounts", "connect", "x", "--handle", "@k", "--access-token", "t")
    ).stdout.strip()

    post_id = await kairos.create_post(account, "--media-id", media_id)
    shown = (await kairos.ok("--json", "posts", "show", post_id)).json()
    refused = await kairos("media", "delete", media_id)

    assert shown["media_ids"] == [media_id]
    assert refused.code == 5
    assert f"attached to post {post_id}" in refused.stderr
    twice = await kairos("posts", "edit", post_id, "--media-id", media_id, "--media-id", media_id)
    assert "post.media_ids[1]: names the same media as post.media_ids[0]" in twice.stderr

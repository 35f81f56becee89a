"""`request_hash` stays what it was: a hash stored by an earlier version must still match the
same request retried after an upgrade (the values below were computed before its defaults were
cached per class)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kairos_api.service_layer.posts.create import CreatePost, request_hash
from kairos_api.service_layer.posts.rules import ScheduleInput, TargetInput

BERLIN_NINE = ScheduleInput(local_date_time="2030-07-01T09:00:00", time_zone="Europe/Berlin")


@pytest.mark.parametrize(
    ("command", "digest"),
    [
        (
            CreatePost(content="hi", targets=[TargetInput("a1")]),
            "ee746d3022d57ff7c311523958738babf3c1963c054f29ebe2370fb448b1aac5",
        ),
        (
            CreatePost(
                content="Grüße 👋",
                targets=[
                    TargetInput("a1", "other", {"reply_settings": "following"}),
                    TargetInput("a2"),
                ],
                media_urls=["https://x.example/a.png"],
                campaign="spring",
                tags=["b", "a"],
                notes="n",
                schedule=ScheduleInput(at=datetime(2030, 7, 1, 9, tzinfo=UTC)),
                approval_required=True,
                stale_after=timedelta(minutes=5),
                request_id="r-1",
                parent_post_id="p",
                media_ids=["m1"],
            ),
            "79dbe81588fac66723a773dc5f333d4946197ba33580322cedf922a5d23c231c",
        ),
        (
            CreatePost(
                content="later",
                targets=[TargetInput("a1")],
                schedule=ScheduleInput(after=timedelta(hours=2)),
            ),
            "aafb613f36b2574f0581871d00f56b0f97fa75fc1d931b585646808119aac555",
        ),
        (
            CreatePost(content="local", targets=[TargetInput("a1", "")], schedule=BERLIN_NINE),
            "b48ab3a635f14093be8988672031239ce5012d32521a0e48b7c978b03c690d0d",
        ),
    ],
)
def test_the_hash_of_a_request_does_not_change(command: CreatePost, digest: str) -> None:
    assert request_hash(command) == digest

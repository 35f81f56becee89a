"""The Mastodon client against the fake instance, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kairos_fakes.mastodon import MastodonFake, multipart
from kairos_fakes.media import MediaHost, png
from kairos_publisher.media import MediaFetcher
from kairos_publisher.platforms import mastodon
from kairos_publisher.platforms.base import PublishOutcome, PublishRequest, Result
from support.platforms import context, publish_request


@pytest.fixture
async def fake() -> AsyncIterator[MastodonFake]:
    server = MastodonFake()
    await server.start()
    yield server
    await server.stop()


def client(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> mastodon.MastodonClient:
    return mastodon.create(context(http, media, fake))


def request(
    fake: MastodonFake, content: str = "Hello from Kairos", **fields: object
) -> PublishRequest:
    return publish_request(content, instance_url=fake.url, **fields)


def close_to(instant: datetime | None, expected: datetime, slack: float = 1.0) -> bool:
    return instant is not None and abs((instant - expected).total_seconds()) <= slack


async def test_text_post_sends_what_mastodon_expects(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    outcome = await client(http, media, fake).publish(request(fake))

    assert outcome.result is Result.PUBLISHED, outcome
    [status] = fake.statuses
    assert outcome.platform_post_id == status["id"]
    assert outcome.url == f"{fake.url}/@kairos/{status['id']}"
    assert outcome.http_status == 200
    assert outcome.blocked_until is None
    [sent] = fake.calls("POST")
    assert sent.path == "/api/v1/statuses"
    assert sent.headers["authorization"] == "Bearer token-1"
    assert sent.headers["idempotency-key"] == "kairos-target-1"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.body) == {"status": "Hello from Kairos"}
    assert status["content"] == "<p>Hello from Kairos</p>"


async def test_settings_become_status_fields(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    settings = {"visibility": "unlisted", "sensitive": "true", "spoiler_text": "cw", "other": "x"}
    outcome = await client(http, media, fake).publish(request(fake, settings=settings))

    assert outcome.result is Result.PUBLISHED, outcome
    [sent] = fake.calls("POST", "/statuses")
    assert json.loads(sent.body) == {
        "status": "Hello from Kairos",
        "visibility": "unlisted",
        "sensitive": True,
        "spoiler_text": "cw",
    }
    [status] = fake.statuses
    assert (status["visibility"], status["sensitive"]) == ("unlisted", True)


async def test_image_is_uploaded_polled_until_processed_then_attached(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: MastodonFake
) -> None:
    outcome = await client(http, media, fake).publish(
        request(fake, media_urls=[media_host.image_url("photo.png")])
    )

    assert outcome.result is Result.PUBLISHED, outcome
    [upload] = fake.calls("POST", "/api/v2/media")
    assert upload.headers["authorization"] == "Bearer token-1"
    assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = multipart(upload.headers["content-type"], upload.body)
    assert parts["file"] == ("image/png", png())
    [media_id] = fake.media
    # 202 from the upload, then 206 once and 200.
    assert [c.path for c in fake.calls("GET")] == [f"/api/v1/media/{media_id}"] * 2
    [create] = fake.calls("POST", "/statuses")
    assert json.loads(create.body) == {"status": "Hello from Kairos", "media_ids": [media_id]}
    [status] = fake.statuses
    assert [a["id"] for a in status["media_attachments"]] == [media_id]


async def test_images_processed_at_once_are_not_polled(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: MastodonFake
) -> None:
    fake.processing_polls = 0
    urls = [media_host.image_url("a.jpg"), media_host.image_url("b.gif")]
    outcome = await client(http, media, fake).publish(request(fake, content="", media_urls=urls))

    assert outcome.result is Result.PUBLISHED, outcome
    assert fake.calls("GET") == []
    types = [
        multipart(u.headers["content-type"], u.body)["file"][0]
        for u in fake.calls("POST", "/api/v2/media")
    ]
    assert types == ["image/jpeg", "image/gif"]
    assert len(fake.statuses[0]["media_attachments"]) == 2


async def test_an_image_over_8_mb_is_permanent_and_nothing_is_uploaded(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: MastodonFake
) -> None:
    big = f"{media_host.url}/big.png?bytes={8 * 1024 * 1024 + 1}"
    outcome = await client(http, media, fake).publish(request(fake, media_urls=[big]))

    assert outcome.result is Result.PERMANENT
    assert outcome.code == "media"
    assert fake.requests == []


async def test_thread_each_part_replies_to_the_one_before(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    platform = client(http, media, fake)
    previous = ""
    ids = []
    for n in (1, 2, 3):
        outcome = await platform.publish(
            request(fake, f"part {n}", reply_to=previous, idempotency_key=f"key-{n}")
        )
        assert outcome.result is Result.PUBLISHED, outcome
        ids.append(outcome.platform_post_id)
        previous = outcome.platform_post_id

    assert [s["id"] for s in fake.statuses] == ids
    assert [s["in_reply_to_id"] for s in fake.statuses] == [None, ids[0], ids[1]]
    bodies = [json.loads(c.body) for c in fake.calls("POST", "/statuses")]
    assert "in_reply_to_id" not in bodies[0]
    assert [b.get("in_reply_to_id") for b in bodies[1:]] == ids[:2]


async def test_resuming_a_thread_after_part_two_posts_each_part_once(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    platform = client(http, media, fake)
    first = await platform.publish(request(fake, "part 1", idempotency_key="key-1"))
    second = await platform.publish(
        request(fake, "part 2", reply_to=first.platform_post_id, idempotency_key="key-2")
    )
    assert second.result is Result.PUBLISHED, second

    # The publisher restarts and carries on with part 3, replying to part 2's saved id.
    third = await platform.publish(
        request(fake, "part 3", reply_to=second.platform_post_id, idempotency_key="key-3")
    )

    assert third.result is Result.PUBLISHED, third
    assert [s["content"] for s in fake.statuses] == [
        "<p>part 1</p>",
        "<p>part 2</p>",
        "<p>part 3</p>",
    ]
    assert fake.statuses[2]["in_reply_to_id"] == second.platform_post_id
    assert len(fake.calls("POST", "/statuses")) == 3


async def test_a_revoked_token_is_auth_and_there_is_no_refresh(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    fake.tokens.revoke("token-1")
    platform = client(http, media, fake)
    outcome = await platform.publish(request(fake))

    assert outcome.result is Result.AUTH
    assert (outcome.http_status, outcome.message) == (401, "The access token was revoked")
    assert not hasattr(platform, "refresh")
    assert fake.statuses == []


async def test_an_expired_token_is_auth(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    fake.fail_next("create", "expire_token")
    outcome = await client(http, media, fake).publish(request(fake))

    assert outcome.result is Result.AUTH
    assert outcome.message == "The access token expired"
    assert fake.statuses == []


async def test_429_waits_for_the_iso_reset(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    fake.fail_next("create", "rate_limit", seconds=120)
    outcome = await client(http, media, fake).publish(request(fake))

    expected = datetime.now(UTC) + timedelta(seconds=120)
    assert outcome.result is Result.RETRYABLE
    assert (outcome.http_status, outcome.message) == (429, "Too many requests")
    assert close_to(outcome.retry_not_before, expected)
    assert outcome.blocked_until == outcome.retry_not_before
    assert fake.statuses == []


async def test_the_last_call_of_the_window_blocks_the_account_until_reset(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    fake.limit = 1
    platform = client(http, media, fake)
    published = await platform.publish(request(fake))

    assert published.result is Result.PUBLISHED, published
    window_end = datetime.fromtimestamp(fake.windows["token-1"].ends_at, UTC)
    assert close_to(published.blocked_until, window_end, slack=0.01)

    refused = await platform.publish(request(fake, "again", idempotency_key="key-2"))
    assert refused.result is Result.RETRYABLE
    assert refused.http_status == 429
    assert refused.retry_not_before == published.blocked_until
    assert len(fake.statuses) == 1


async def test_text_over_500_graphemes_is_permanent_with_mastodons_message(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    platform = client(http, media, fake)
    url = "https://example.com/" + "p" * 100  # counts 23
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one grapheme
    fits = "a" * 475 + family + " " + url  # 475 + 1 + 1 + 23 = 500
    outcome = await platform.publish(request(fake, fits, idempotency_key="fits"))
    assert outcome.result is Result.PUBLISHED, outcome

    outcome = await platform.publish(request(fake, fits + "!", idempotency_key="too-long"))
    assert outcome.result is Result.PERMANENT
    assert outcome.http_status == 422
    assert outcome.message == "Validation failed: Text character limit of 500 exceeded"
    assert len(fake.statuses) == 1


async def test_a_disabled_account_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    fake.disabled = True
    outcome = await client(http, media, fake).publish(request(fake))

    assert outcome.result is Result.PERMANENT
    assert (outcome.http_status, outcome.message) == (403, "Your login is currently disabled")


async def test_replying_to_a_missing_status_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    outcome = await client(http, media, fake).publish(request(fake, reply_to="404404"))

    assert outcome.result is Result.PERMANENT
    assert outcome.http_status == 404
    assert "does not appear to exist" in outcome.message


async def test_a_media_not_ready_422_in_the_accounts_language_waits_for_the_media_then_posts(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: MastodonFake
) -> None:
    """Mastodon answers in the account's language: the client asks the attachments, not the
    words, whether the 422 was about processing."""
    fake.locale = "de"
    fake.reports_processed_early = True  # the status is created while the file still processes
    outcome = await client(http, media, fake).publish(
        request(fake, media_urls=[media_host.image_url()])
    )

    assert outcome.result is Result.PUBLISHED, outcome
    [status] = fake.statuses
    assert outcome.platform_post_id == status["id"]
    [attachment] = status["media_attachments"]
    assert [(c.method, c.path) for c in fake.requests] == [
        ("POST", "/api/v2/media"),
        ("POST", "/api/v1/statuses"),  # 422, in German
        ("GET", f"/api/v1/media/{attachment['id']}"),  # 206: still processing
        ("GET", f"/api/v1/media/{attachment['id']}"),  # 200
        ("POST", "/api/v1/statuses"),
    ]


async def test_a_422_in_the_accounts_language_with_all_media_processed_is_permanent(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: MastodonFake
) -> None:
    fake.locale = "de"
    fake.processing_polls = 0
    images = [media_host.image_url(f"{n}.png") for n in range(5)]
    outcome = await client(http, media, fake).publish(request(fake, media_urls=images))

    assert (outcome.result, outcome.http_status) == (Result.PERMANENT, 422)
    assert outcome.message == "Es können nicht mehr als 4 Dateien angehängt werden"
    assert len(fake.calls("GET", "/api/v1/media/")) == 5  # each asked once, none processing
    assert fake.statuses == []


async def test_server_error_is_retryable(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    fake.fail_next("create", "server_error")
    outcome = await client(http, media, fake).publish(request(fake))

    assert outcome.result is Result.RETRYABLE
    assert outcome.http_status == 503
    assert fake.statuses == []


async def test_timeout_after_sending_is_unknown_and_the_same_key_recovers_the_status(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    platform = client(http, media, fake)
    fake.fail_next("create", "hang")
    lost = await platform.publish(request(fake))

    assert lost.result is Result.UNKNOWN
    assert lost.code == "timeout"
    [status] = fake.statuses

    again = await platform.publish(request(fake))

    assert again.result is Result.PUBLISHED, again
    assert again.platform_post_id == status["id"]
    assert len(fake.statuses) == 1
    assert [c.headers["idempotency-key"] for c in fake.calls("POST")] == ["kairos-target-1"] * 2


async def test_a_lost_upload_answer_is_retryable_and_posts_nothing(
    http: httpx.AsyncClient, media: MediaFetcher, media_host: MediaHost, fake: MastodonFake
) -> None:
    fake.fail_next("upload", "hang")
    outcome = await client(http, media, fake).publish(
        request(fake, media_urls=[media_host.image_url()])
    )

    assert outcome.result is Result.RETRYABLE
    assert fake.statuses == []
    assert fake.calls("POST", "/statuses") == []


async def test_without_instance_url_the_platform_url_is_used(
    http: httpx.AsyncClient, media: MediaFetcher, fake: MastodonFake
) -> None:
    outcome = await client(http, media, fake).publish(publish_request(instance_url=""))
    assert outcome.result is Result.PUBLISHED, outcome
    assert len(fake.statuses) == 1

    nowhere = mastodon.create(context(http, media))
    outcome = await nowhere.publish(publish_request(instance_url=""))
    assert outcome == PublishOutcome(
        Result.PERMANENT, code="no_instance_url", message="no instance_url"
    )


async def test_the_fake_refuses_media_still_processing(
    http: httpx.AsyncClient, fake: MastodonFake
) -> None:
    auth = {"authorization": "Bearer any"}
    uploaded = await http.post(
        f"{fake.url}/api/v2/media", files={"file": ("a.png", png(), "image/png")}, headers=auth
    )
    assert (uploaded.status_code, uploaded.json()["url"]) == (202, None)
    media_id = uploaded.json()["id"]

    early = await http.post(
        f"{fake.url}/api/v1/statuses", json={"status": "x", "media_ids": [media_id]}, headers=auth
    )
    assert early.status_code == 422
    assert "not finished processing" in early.json()["error"]
    polls = [(await http.get(f"{fake.url}/api/v1/media/{media_id}", headers=auth)) for _ in "ab"]
    assert [p.status_code for p in polls] == [206, 200]
    assert polls[1].json()["url"] is not None
    late = await http.post(
        f"{fake.url}/api/v1/statuses", json={"status": "x", "media_ids": [media_id]}, headers=auth
    )
    assert late.status_code == 200


async def test_the_fake_takes_form_bodies_too(http: httpx.AsyncClient, fake: MastodonFake) -> None:
    fake.processing_polls = 0
    uploaded = await http.post(
        f"{fake.url}/api/v2/media",
        files={"file": ("a.png", png(), "image/png")},
        data={"description": "a blue square"},
        headers={"authorization": "Bearer any"},
    )
    assert uploaded.status_code == 200
    media_id = uploaded.json()["id"]
    assert uploaded.json()["description"] == "a blue square"

    answer = await http.post(
        f"{fake.url}/api/v1/statuses",
        data={"status": "form", "media_ids[]": [media_id]},
        headers={"authorization": "Bearer any", "idempotency-key": "form"},
    )
    assert answer.status_code == 200
    assert answer.json()["media_attachments"][0]["id"] == media_id
    assert answer.headers["x-ratelimit-remaining"] == "298"

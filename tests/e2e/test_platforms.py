"""Every platform end to end: api, scheduler and publisher as real processes, each platform's API
played by its local fake over real HTTP, images served by a local media host.

One system runs for the module; each test tells its posts apart by a marker in the content.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest

from kairos.posts.v1 import media_pb2, media_pb2_grpc, posts_pb2
from kairos_api.adapters.orm import Account
from kairos_api.bootstrap import bootstrap
from kairos_api.service_layer.accounts import decrypt_credentials
from kairos_api.settings import ApiSettings
from kairos_common.platforms import CATALOGUE, Platform
from kairos_fakes import fake_classes, platform_urls
from kairos_fakes.base import FakeServer
from kairos_fakes.bluesky import BlueskyFake
from kairos_fakes.discord import DiscordFake
from kairos_fakes.media import MediaHost
from kairos_fakes.x import XFake
from kairos_publisher.platforms.base import GRAPH_API_VERSION, LINKEDIN_VERSION
from support.media import write_video
from support.nats_server import NatsServer
from support.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server
from support.stack import Stack, at, running_stack

pytestmark = pytest.mark.e2e

#: What each fake keeps, by attribute: posts, and replies kept apart from them.
KEPT = ("posts", "statuses", "comments")


@dataclass
class Platforms:
    fakes: dict[str, FakeServer]
    media: MediaHost
    accounts: dict[str, str]  # platform name -> account id

    def fake(self, name: str) -> Any:
        return self.fakes[name]

    def kept(self, name: str, marker: str) -> list[dict[str, Any]]:
        """What the platform holds whose body mentions `marker`."""
        fake = self.fakes[name]
        found: list[dict[str, Any]] = []
        for attribute in KEPT:
            for item in getattr(fake, attribute, []):
                if marker in json.dumps(item, default=str):
                    found.append(item)
        return found


def credentials(fake: FakeServer) -> tuple[str, posts_pb2.Credentials]:
    """A handle and credentials for an account on `fake`, as a user would connect them."""
    name = fake.name
    if name == "x":
        access, refresh = cast(XFake, fake).grant("kairos")
        return "@kairos", posts_pb2.Credentials(access_token=access, refresh_token=refresh)
    if name == "mastodon":
        return "@kairos@fake", posts_pb2.Credentials(access_token="m-token", instance_url=fake.url)
    if name == "bluesky":
        bluesky = cast(BlueskyFake, fake)
        account = bluesky.add_account("kairos.test", "app-password")
        access, refresh = bluesky.session_for(account.did)
        return "kairos.test", posts_pb2.Credentials(
            access_token=access,
            refresh_token=refresh,
            instance_url=fake.url,
            extra={"did": account.did},
        )
    if name == "linkedin":
        return "Kairos", posts_pb2.Credentials(access_token="li-token", page_id="urn:li:person:k1")
    if name in ("facebook", "instagram", "threads"):
        return "kairos", posts_pb2.Credentials(access_token=f"{name}-token", page_id="1784001")
    if name == "telegram":
        return "@kairos_news", posts_pb2.Credentials(
            access_token="123456:telegram-token", chat_id="@kairos_news"
        )
    if name == "discord":
        discord = cast(DiscordFake, fake)
        hook = discord.create_webhook(guild_id="9001", channel_id="9002")
        return "#news", posts_pb2.Credentials(access_token=discord.webhook_url(hook))
    if name == "slack":
        return "#news", posts_pb2.Credentials(access_token="xoxb-token", chat_id="C0NEWS")
    if name == "pinterest":
        return "kairos", posts_pb2.Credentials(access_token="pina-token", page_id="549755885175")
    if name == "tiktok":
        return "@kairos", posts_pb2.Credentials(access_token="act.token", refresh_token="rft.token")
    if name == "youtube":
        return "@kairos", posts_pb2.Credentials(access_token="ya29.token", refresh_token="1//token")
    raise AssertionError(f"no credentials for the {name} fake: add them here")


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def platforms(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server
) -> AsyncIterator[tuple[Stack, Platforms]]:
    fakes = {cls.name: cls() for cls in fake_classes() if cls.name != "media"}
    media = MediaHost()
    for server in [media, *fakes.values()]:
        await server.start()
    bucket = s3_server.create_bucket()
    env = {
        # Uploads go to S3 (moto's server), which presigns URLs for the platforms that pull.
        "KAIROS_MEDIA_STORE": f"s3://{bucket}/media",
        "KAIROS_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "KAIROS_PLATFORM_URLS": platform_urls(fakes.values()),
        "KAIROS_MEDIA_ALLOWED_NETWORKS": "127.0.0.0/8",
        "KAIROS_ALLOW_HTTP_MEDIA": "true",
        "KAIROS_HTTP_TIMEOUT_SECONDS": "2",
        "KAIROS_X_CLIENT_ID": "kairos-app",
    }
    try:
        async with running_stack(
            nats_server, tmp_path_factory.mktemp("platforms-logs"), env=env
        ) as stack:
            accounts: dict[str, str] = {}
            for name, fake in fakes.items():
                handle, secret = credentials(fake)
                reply = await stack.accounts.ConnectAccount(
                    posts_pb2.ConnectAccountRequest(
                        platform=posts_pb2.Platform.Value(f"PLATFORM_{name.upper()}"),
                        handle=handle,
                        credentials=secret,
                    ),
                    metadata=stack.metadata,
                )
                accounts[name] = reply.account.id
            yield stack, Platforms(fakes, media, accounts)
    finally:
        for server in [media, *fakes.values()]:
            await server.stop()


def marker() -> str:
    return f"m{uuid.uuid4().hex[:10]}"


async def create(
    stack: Stack,
    accounts: list[str],
    content: str,
    *,
    media: list[str] | None = None,
    parent: str = "",
    seconds: float = 0.0,
    settings: dict[str, dict[str, str]] | None = None,
) -> posts_pb2.Post:
    """Create a post on `accounts`; `settings` are a target's settings by its account id."""
    chosen = settings or {}
    request = posts_pb2.CreatePostRequest(
        content=content,
        media_urls=media or [],
        targets=[posts_pb2.TargetSpec(account_id=a, settings=chosen.get(a, {})) for a in accounts],
        parent_post_id=parent,
    )
    request.schedule.at.CopyFrom(at(seconds))
    return (await stack.posts.CreatePost(request, metadata=stack.metadata)).post


async def settled(
    stack: Stack,
    post_id: str,
    done: Callable[[posts_pb2.Post], bool],
    timeout: float = 30.0,
) -> posts_pb2.Post:
    """The post once `done` says so; fails with its state and the services' logs."""
    deadline = time.monotonic() + timeout
    post = await stack.get(post_id)
    while time.monotonic() < deadline:
        post = await stack.get(post_id)
        if done(post):
            return post
        await asyncio.sleep(0.1)
    raise AssertionError(f"post {post_id} did not settle:\n{post}\n{stack.logs()}")


def published(post: posts_pb2.Post) -> bool:
    return post.status == posts_pb2.POST_STATUS_PUBLISHED


def first_attempt_finished(post: posts_pb2.Post) -> bool:
    attempts = post.targets[0].attempts
    return bool(attempts) and attempts[0].HasField("finished_at")


def target_on(post: posts_pb2.Post, account_id: str) -> posts_pb2.Target:
    return next(t for t in post.targets if t.account_id == account_id)


async def test_one_post_with_an_image_goes_out_once_on_every_platform(
    platforms: tuple[Stack, Platforms],
) -> None:
    stack, world = platforms
    mark = marker()
    # YouTube takes videos only: an image post is not for it.
    accounts = {name: a for name, a in world.accounts.items() if name != "youtube"}
    post = await create(
        stack,
        list(accounts.values()),
        f"Launch day {mark} https://example.com/launch",
        media=[world.media.image_url("launch.jpg")],
        # TikTok has no default audience: every TikTok target says who may see it.
        settings={world.accounts["tiktok"]: {"privacy_level": "PUBLIC_TO_EVERYONE"}},
    )
    done = await settled(stack, post.id, published, timeout=45)
    for name, account in accounts.items():
        target = target_on(done, account)
        assert target.platform_post_id, f"{name}: no platform id"
        kept = world.kept(name, mark)
        assert len(kept) == 1, f"{name} holds {len(kept)} posts with the marker: {kept}"
        assert [a.published for a in target.attempts] == [True], name
    # The byte-uploading platforms fetched the image from the media host.
    fetched = world.media.calls("GET", "/images/launch.jpg")
    assert len(fetched) >= 4
    # Meta's Graph API and LinkedIn were addressed at the publisher's configured versions.
    for name in ("facebook", "instagram"):
        paths = [r.path for r in world.fake(name).calls("POST") if mark in r.body.decode()]
        assert paths, name
        assert all(p.startswith(f"/{GRAPH_API_VERSION}/") for p in paths), paths
    sent = [
        r for r in world.fake("linkedin").calls("POST", "/rest/posts") if mark in r.body.decode()
    ]
    assert [r.headers["linkedin-version"] for r in sent] == [LINKEDIN_VERSION]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 5 s vertical H.264/AAC MP4 every platform takes, padded past LinkedIn's 75 KB floor by
    a top-level `free` box (ISO/IEC 14496-12 §8.1.2: space a reader skips)."""
    path = write_video(
        tmp_path_factory.mktemp("clip") / "clip.mp4",
        container="mp4",
        video_codec="libx264",
        audio_codec="aac",
        width=360,
        height=640,
        seconds=5.0,
    )
    data = path.read_bytes()
    padding = 100_000
    return data + struct.pack(">I", padding) + b"free" + bytes(padding - 8)


async def test_one_video_post_goes_out_once_on_every_platform_through_its_upload_flow(
    platforms: tuple[Stack, Platforms], clip: bytes
) -> None:
    stack, world = platforms
    mark = marker()
    assert stack.channel is not None
    uploads = media_pb2_grpc.MediaServiceStub(stack.channel)

    async def messages() -> AsyncIterator[media_pb2.UploadMediaRequest]:
        yield media_pb2.UploadMediaRequest(
            upload=media_pb2.MediaUpload(file_name="clip.mp4", size=len(clip))
        )
        yield media_pb2.UploadMediaRequest(chunk=clip)

    video = (await uploads.UploadMedia(messages(), metadata=stack.metadata)).media
    assert video.kind == media_pb2.MEDIA_KIND_VIDEO
    request = posts_pb2.CreatePostRequest(
        content=f"Launch video {mark}",
        media_ids=[video.id],
        targets=[
            posts_pb2.TargetSpec(
                account_id=account,
                settings={
                    "tiktok": {"privacy_level": "PUBLIC_TO_EVERYONE"},
                    "youtube": {"privacy": "public", "title": f"Launch {mark}"},
                }.get(name, {}),
            )
            for name, account in world.accounts.items()
        ],
    )
    request.schedule.at.CopyFrom(at(0))
    post = (await stack.posts.CreatePost(request, metadata=stack.metadata)).post
    done = await settled(stack, post.id, published, timeout=60)

    pulled = {n for n in world.fakes if CATALOGUE[Platform(n)].pulls_by_url("video")}
    assert pulled == {"facebook", "instagram", "threads"}
    for name, account in world.accounts.items():
        target = target_on(done, account)
        assert target.platform_post_id, f"{name}: no platform id"
        assert target.platform_url.startswith(("https://", "http://")), f"{name}: no URL"
        assert [a.published for a in target.attempts] == [True], name
        bodies = [r.body + json.dumps(r.query).encode() for r in world.fake(name).requests]
        if name in pulled:
            # Given the presigned URL, the platform fetched the video from the store itself.
            texts = [urllib.parse.unquote_plus(b.decode(errors="replace")) for b in bodies]
            assert any("/media/" in t and "X-Amz-Signature" in t for t in texts), name
            if name != "facebook":  # (a Page video's download is checked below)
                # ... and downloaded exactly the uploaded bytes from it, once.
                containers = world.fake(name).containers.values()
                fetched = [c.video.result() for c in containers if c.video is not None]
                assert [v.sha256 for v in fetched] == [hashlib.sha256(clip).hexdigest()], name
        else:
            assert any(clip in body for body in bodies), f"{name} was not sent the video's bytes"
        if name == "youtube":
            held = [v for v in world.fake(name).videos if v.id == target.platform_post_id]
            assert [v.sha256 for v in held] == [hashlib.sha256(clip).hexdigest()]
        elif name == "facebook":  # a Page video, not a feed post
            page_video = world.fake(name).videos[target.platform_post_id]
            assert mark in json.dumps(page_video, default=str)
            assert page_video["video"].sha256 == hashlib.sha256(clip).hexdigest()
        else:
            kept = world.kept(name, mark)
            assert len(kept) == 1, f"{name} holds {len(kept)} posts with the marker: {kept}"


async def test_a_thread_broken_after_its_second_part_resumes_and_posts_each_part_once(
    platforms: tuple[Stack, Platforms],
) -> None:
    stack, world = platforms
    mark = marker()
    names = ["x", "mastodon", "bluesky", "threads", "telegram", "slack"]
    accounts = [world.accounts[n] for n in names]
    first = await create(stack, accounts, f"1/4 {mark}")
    second = await create(stack, accounts, f"2/4 {mark}", parent=first.id)
    await settled(stack, second.id, published)
    # Part three is refused on X (and only there); part four comes due meanwhile.
    world.fake("x").fail_next("create", "reject", message="You are not permitted to do that.")
    third = await create(stack, accounts, f"3/4 {mark}", parent=second.id)
    fourth = await create(stack, accounts, f"4/4 {mark}", parent=third.id)
    x_account = world.accounts["x"]
    broken = await settled(
        stack,
        third.id,
        lambda p: (
            target_on(p, x_account).status == posts_pb2.TARGET_STATUS_FAILED
            and p.status == posts_pb2.POST_STATUS_PARTIALLY_PUBLISHED
        ),
    )
    assert "not permitted" in target_on(broken, x_account).last_error.message
    elsewhere = await settled(
        stack,
        fourth.id,
        lambda p: all(
            t.status == posts_pb2.TARGET_STATUS_PUBLISHED
            for t in p.targets
            if t.account_id != x_account
        ),
    )
    # On X the fourth part waits for the third: it is never posted as a stand-alone post.
    assert target_on(elsewhere, x_account).status == posts_pb2.TARGET_STATUS_PENDING
    await asyncio.sleep(1.0)
    assert not [p for p in world.kept("x", mark) if p["text"].startswith(("3/4", "4/4"))]

    await stack.posts.RetryPost(
        posts_pb2.RetryPostRequest(post_id=third.id), metadata=stack.metadata
    )
    await settled(stack, third.id, published)
    last = await settled(stack, fourth.id, published)

    for name in names:
        texts = sorted(str(item) for item in world.kept(name, mark))
        assert len(texts) == 4, f"{name} holds {len(texts)} parts: {texts}"
    x_posts = {p["text"][:3]: p for p in world.kept("x", mark)}
    ids = [target_on(await stack.get(p.id), x_account).platform_post_id for p in (first, second)]
    ids.append(target_on(await stack.get(third.id), x_account).platform_post_id)
    assert x_posts["2/4"]["in_reply_to"] == ids[0]
    assert x_posts["3/4"]["in_reply_to"] == ids[1]
    assert x_posts["4/4"]["in_reply_to"] == ids[2]
    assert target_on(last, x_account).platform_post_id == x_posts["4/4"]["id"]


async def stored_credentials(stack: Stack, account_id: str) -> dict[str, Any]:
    app = bootstrap(ApiSettings.from_env(stack.env))
    try:
        async with app.uow() as uow:
            account = await uow.session.get(Account, uuid.UUID(account_id))
            assert account is not None
            return dict(decrypt_credentials(app, account))
    finally:
        await app.close()


async def connect_x(
    stack: Stack, world: Platforms, *, expired: bool, expiring: bool = False, refresh: str = ""
) -> tuple[str, str, str]:
    """A new X account: id, access and refresh token. `expired`: the fake has expired the token;
    `expiring`: Kairos was told it expires in a minute; `refresh`: a refresh token to use instead
    of the one the fake issued."""
    x = cast(XFake, world.fake("x"))
    handle = f"@k{uuid.uuid4().hex[:8]}"
    access, issued = x.grant(handle[1:])
    if expired:
        x.tokens.expire(access)
    secret = posts_pb2.Credentials(access_token=access, refresh_token=refresh or issued)
    if expired or expiring:
        secret.expires_at.FromDatetime(datetime.now(UTC) + timedelta(minutes=-1 if expired else 1))
    reply = await stack.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(
            platform=posts_pb2.PLATFORM_X, handle=handle, credentials=secret
        ),
        metadata=stack.metadata,
    )
    return reply.account.id, access, secret.refresh_token


async def test_a_refresh_refused_ahead_of_expiry_keeps_the_working_token_and_the_account(
    platforms: tuple[Stack, Platforms],
) -> None:
    stack, world = platforms
    account, access, _ = await connect_x(stack, world, expired=False, expiring=True, refresh="bad")
    mark = marker()
    post = await create(stack, [account], f"still good {mark}")
    await settled(stack, post.id, published)
    reply = await stack.accounts.GetAccount(
        posts_pb2.GetAccountRequest(account_id=account), metadata=stack.metadata
    )
    assert reply.account.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    assert (await stored_credentials(stack, account))["access_token"] == access
    assert len(world.kept("x", mark)) == 1


async def test_an_expired_x_token_is_refreshed_saved_and_the_post_goes_out(
    platforms: tuple[Stack, Platforms],
) -> None:
    stack, world = platforms
    x = cast(XFake, world.fake("x"))
    account, old_access, old_refresh = await connect_x(stack, world, expired=True)
    refreshes = x.tokens.refreshes
    mark = marker()
    post = await create(stack, [account], f"fresh token {mark}")
    await settled(stack, post.id, published)
    assert x.tokens.refreshes == refreshes + 1
    saved = await stored_credentials(stack, account)
    assert saved["access_token"] != old_access
    assert saved["refresh_token"] != old_refresh  # X rotates refresh tokens
    assert saved["expires_at"]
    assert datetime.fromisoformat(saved["expires_at"]) > datetime.now(UTC) + timedelta(hours=1)
    created = world.kept("x", mark)
    assert len(created) == 1


async def test_a_token_endpoint_that_fails_for_now_retries_without_asking_for_reauth(
    platforms: tuple[Stack, Platforms],
) -> None:
    stack, world = platforms
    x = cast(XFake, world.fake("x"))
    account, _, _ = await connect_x(stack, world, expired=True)
    # Both the refresh before the call and the one after the 401 fail with a 503.
    x.fail_next("refresh", "server_error", times=2)
    mark = marker()
    post = await create(stack, [account], f"later {mark}")
    done = await settled(stack, post.id, published, timeout=45)
    attempts = target_on(done, account).attempts
    assert [a.published for a in attempts] == [False, True]
    assert attempts[0].error_class == posts_pb2.ERROR_CLASS_RETRYABLE
    reply = await stack.accounts.GetAccount(
        posts_pb2.GetAccountRequest(account_id=account), metadata=stack.metadata
    )
    assert reply.account.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    assert len(world.kept("x", mark)) == 1


async def test_a_rate_limit_holds_the_account_until_the_platforms_reset(
    platforms: tuple[Stack, Platforms],
) -> None:
    stack, world = platforms
    x = cast(XFake, world.fake("x"))
    account, _, _ = await connect_x(stack, world, expired=False)
    x.fail_next("create", "rate_limit", seconds=3)
    mark = marker()
    first = await create(stack, [account], f"one {mark}")
    limited = await settled(stack, first.id, first_attempt_finished)
    refused_at = limited.targets[0].attempts[0].finished_at.ToDatetime(tzinfo=UTC)
    reply = await stack.accounts.GetAccount(
        posts_pb2.GetAccountRequest(account_id=account), metadata=stack.metadata
    )
    blocked = reply.account.blocked_until.ToDatetime(tzinfo=UTC)
    assert blocked > refused_at + timedelta(seconds=1.5)
    # A second post due now on the same account waits for the reset too.
    second = await create(stack, [account], f"two {mark}")
    for post in (first, second):
        done = await settled(stack, post.id, published, timeout=30)
        sent = done.targets[0].attempts[-1].started_at.ToDatetime(tzinfo=UTC)
        assert sent >= blocked - timedelta(milliseconds=50), (sent, blocked)
    assert len(world.kept("x", mark)) == 2


async def test_a_timeout_after_sending_on_mastodon_is_retried_under_its_key_and_posts_once(
    platforms: tuple[Stack, Platforms],
) -> None:
    stack, world = platforms
    mastodon = world.fake("mastodon")
    mastodon.fail_next("create", "hang")
    mark = marker()
    post = await create(stack, [world.accounts["mastodon"]], f"hung {mark}")
    done = await settled(stack, post.id, published, timeout=45)
    attempts = done.targets[0].attempts
    assert [a.published for a in attempts] == [False, True]
    assert attempts[0].error_class == posts_pb2.ERROR_CLASS_UNKNOWN
    keys = {
        r.headers["idempotency-key"]
        for r in mastodon.calls("POST", "/api/v1/statuses")
        if mark in r.body.decode(errors="replace")
    }
    assert len(keys) == 1
    assert len(world.kept("mastodon", mark)) == 1


async def test_a_timeout_after_sending_elsewhere_ends_unknown_and_is_not_sent_again(
    platforms: tuple[Stack, Platforms],
) -> None:
    stack, world = platforms
    world.fake("telegram").fail_next("create", "hang")
    mark = marker()
    post = await create(stack, [world.accounts["telegram"]], f"maybe {mark}")
    done = await settled(
        stack, post.id, lambda p: p.targets[0].status == posts_pb2.TARGET_STATUS_UNKNOWN
    )
    assert len(done.targets[0].attempts) == 1
    await asyncio.sleep(1.0)
    assert len(world.kept("telegram", mark)) == 1  # it did arrive; Kairos says it may have


async def test_a_slack_internal_error_may_have_posted_so_the_target_ends_unknown_not_resent(
    platforms: tuple[Stack, Platforms],
) -> None:
    """Slack says of `internal_error` that the message may have been posted: sending it again
    could post it twice. The fake posts it, then answers the error."""
    stack, world = platforms
    world.fake("slack").fail_next("create", "reject", message="internal_error")
    mark = marker()
    post = await create(stack, [world.accounts["slack"]], f"once {mark}")
    done = await settled(
        stack, post.id, lambda p: p.targets[0].status == posts_pb2.TARGET_STATUS_UNKNOWN
    )
    [attempt] = done.targets[0].attempts
    assert (attempt.error_class, attempt.error_code) == (
        posts_pb2.ERROR_CLASS_UNKNOWN,
        "internal_error",
    )
    await asyncio.sleep(1.0)  # a retry would have come by now (the stack's backoff base is 0.5 s)
    assert len(world.kept("slack", mark)) == 1


async def test_a_linkedin_duplicate_of_an_older_post_fails_the_target_naming_that_post(
    platforms: tuple[Stack, Platforms],
) -> None:
    """LinkedIn answers DUPLICATE_POST for any earlier post with the same text: Kairos made
    nothing, so the target fails and says which post LinkedIn meant."""
    stack, world = platforms
    linkedin = world.fake("linkedin")
    mark = marker()
    text = f"Same words as last year {mark}"
    async with httpx.AsyncClient() as http:
        earlier = await http.post(
            f"{linkedin.url}/rest/posts",
            json={
                "author": "urn:li:person:k1",
                "commentary": text,
                "visibility": "PUBLIC",
                "distribution": {"feedDistribution": "MAIN_FEED"},
                "lifecycleState": "PUBLISHED",
            },
            headers={
                "authorization": "Bearer li-token",
                "linkedin-version": LINKEDIN_VERSION,
                "x-restli-protocol-version": "2.0.0",
            },
        )
    old = earlier.headers["x-restli-id"]
    post = await create(stack, [world.accounts["linkedin"]], text)
    done = await settled(
        stack, post.id, lambda p: p.targets[0].status == posts_pb2.TARGET_STATUS_FAILED
    )
    target = done.targets[0]
    assert (target.last_error.error_class, target.last_error.code) == (
        posts_pb2.ERROR_CLASS_PERMANENT,
        "DUPLICATE_POST",
    )
    assert old in target.last_error.message
    assert target.platform_post_id == ""
    assert [p["urn"] for p in world.kept("linkedin", mark)] == [old]


async def test_a_linkedin_post_whose_answer_was_lost_is_recovered_by_its_own_retry(
    platforms: tuple[Stack, Platforms],
) -> None:
    """The post was made but its answer lost (UNKNOWN); retrying the target meets LinkedIn's
    duplicate guard, which now names this target's own post: published, once."""
    stack, world = platforms
    world.fake("linkedin").fail_next("create", "hang")
    mark = marker()
    post = await create(stack, [world.accounts["linkedin"]], f"Answer lost {mark}")
    await settled(stack, post.id, lambda p: p.targets[0].status == posts_pb2.TARGET_STATUS_UNKNOWN)
    [made] = world.kept("linkedin", mark)

    await stack.posts.RetryPost(
        posts_pb2.RetryPostRequest(post_id=post.id), metadata=stack.metadata
    )
    done = await settled(stack, post.id, published)
    target = done.targets[0]
    assert target.platform_post_id == made["urn"]
    assert [(a.published, a.http_status) for a in target.attempts] == [(False, 0), (True, 422)]
    assert len(world.kept("linkedin", mark)) == 1

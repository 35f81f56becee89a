"""An uploaded image end to end: api, scheduler and publisher as real processes sharing one media
store, the platforms played by their local fakes over real HTTP.

A PNG uploaded through MediaService and named by a post's media_ids reaches a platform that is
sent bytes (Mastodon, X) as exactly the uploaded bytes, read by the publisher from the store; with
an S3 store (moto's server), a platform that pulls media by URL (Discord's embeds) is given a
presigned URL that serves those bytes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kairos.posts.v1 import media_pb2, media_pb2_grpc, posts_pb2
from kairos_fakes import platform_urls
from kairos_fakes.base import FakeServer
from kairos_fakes.discord import DiscordFake
from kairos_fakes.mastodon import MastodonFake, multipart
from kairos_fakes.x import XFake, form_parts
from support.media import write_image
from support.nats_server import NatsServer
from support.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server
from support.stack import Stack, at, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("picture")
    path = write_image(folder / "p.png", container="image2", codec="png", pixel_format="rgb24")
    return path.read_bytes()


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[MastodonFake, XFake, DiscordFake]]:
    servers = (MastodonFake(), XFake(), DiscordFake())
    servers[0].processing_polls = 0
    for server in servers:
        await server.start()
    yield servers
    for server in servers:
        await server.stop()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


async def connect(stack: Stack, fake: FakeServer) -> str:
    """An account on the fake's platform, as a user would connect it."""
    if isinstance(fake, MastodonFake):
        platform = posts_pb2.PLATFORM_MASTODON
        credentials = posts_pb2.Credentials(access_token="m-token", instance_url=fake.url)
    elif isinstance(fake, XFake):
        platform = posts_pb2.PLATFORM_X
        access, refresh = fake.grant("kairos")
        credentials = posts_pb2.Credentials(access_token=access, refresh_token=refresh)
    else:
        assert isinstance(fake, DiscordFake)
        platform = posts_pb2.PLATFORM_DISCORD
        hook = fake.create_webhook(guild_id="9001", channel_id="9002")
        credentials = posts_pb2.Credentials(access_token=fake.webhook_url(hook))
    reply = await stack.accounts.ConnectAccount(
        posts_pb2.ConnectAccountRequest(platform=platform, handle="@k", credentials=credentials),
        metadata=stack.metadata,
    )
    return reply.account.id


async def upload(stack: Stack, data: bytes) -> media_pb2.Media:
    async def messages() -> AsyncIterator[media_pb2.UploadMediaRequest]:
        yield media_pb2.UploadMediaRequest(
            upload=media_pb2.MediaUpload(file_name="launch.png", size=len(data))
        )
        yield media_pb2.UploadMediaRequest(chunk=data)

    assert stack.channel is not None
    stub = media_pb2_grpc.MediaServiceStub(stack.channel)
    return (await stub.UploadMedia(messages(), metadata=stack.metadata)).media


async def publish(stack: Stack, accounts: list[str], media_id: str) -> posts_pb2.Post:
    """Create a post with the upload, due now, and wait until it is published."""
    request = posts_pb2.CreatePostRequest(
        content=f"Launch {uuid.uuid4().hex[:8]}",
        media_ids=[media_id],
        targets=[posts_pb2.TargetSpec(account_id=a) for a in accounts],
    )
    request.schedule.at.CopyFrom(at(0))
    post = (await stack.posts.CreatePost(request, metadata=stack.metadata)).post
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        post = await stack.get(post.id)
        if post.status not in (posts_pb2.POST_STATUS_SCHEDULED, posts_pb2.POST_STATUS_PUBLISHING):
            break
        await asyncio.sleep(0.1)
    assert post.status == posts_pb2.POST_STATUS_PUBLISHED, f"{post}\n{stack.logs()}"
    return post


def mastodon_files(fake: MastodonFake) -> list[bytes]:
    return [
        multipart(call.headers["content-type"], call.body)["file"][1]
        for call in fake.calls("POST", "/api/v2/media")
    ]


async def test_an_uploaded_png_reaches_mastodon_and_x_as_its_own_bytes(
    nats_server: NatsServer,
    tmp_path: Path,
    picture: bytes,
    fakes: tuple[MastodonFake, XFake, DiscordFake],
) -> None:
    mastodon, x, _ = fakes
    env = {
        "KAIROS_MEDIA_STORE": str(tmp_path / "media"),
        "KAIROS_PLATFORM_URLS": platform_urls([mastodon, x]),
        # The fakes' accounts are reached over plain http on loopback.
        "KAIROS_ALLOW_HTTP_MEDIA": "true",
        "KAIROS_X_CLIENT_ID": "kairos-app",
    }
    async with running_stack(nats_server, tmp_path, env=env) as stack:
        accounts = [await connect(stack, mastodon), await connect(stack, x)]
        media = await upload(stack, picture)

        post = await publish(stack, accounts, media.id)

    assert list(post.media_ids) == [media.id]
    assert mastodon_files(mastodon) == [picture]
    [status] = mastodon.statuses
    assert len(status["media_attachments"]) == 1
    [sent] = x.calls("POST", "/2/media/upload")
    assert form_parts(sent.headers["content-type"], sent.body)["media"][1] == picture


async def test_with_an_s3_store_discord_gets_a_presigned_url_and_mastodon_the_bytes(
    nats_server: NatsServer,
    tmp_path: Path,
    picture: bytes,
    fakes: tuple[MastodonFake, XFake, DiscordFake],
    s3_server: S3Server,
) -> None:
    mastodon, _, discord = fakes
    bucket = s3_server.create_bucket()
    env = {
        "KAIROS_MEDIA_STORE": f"s3://{bucket}/media",
        "KAIROS_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "KAIROS_PLATFORM_URLS": platform_urls([mastodon, discord]),
        "KAIROS_ALLOW_HTTP_MEDIA": "true",
    }
    async with running_stack(nats_server, tmp_path, env=env) as stack:
        accounts = [await connect(stack, mastodon), await connect(stack, discord)]
        media = await upload(stack, picture)

        await publish(stack, accounts, media.id)

    assert mastodon_files(mastodon) == [picture]
    [kept] = discord.posts
    [embed] = kept["message"]["embeds"]
    url = embed["image"]["url"]
    assert url.startswith(f"{s3_server.endpoint_url}/{bucket}/media/")
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
    assert (fetched.status_code, fetched.content) == (200, picture)

"""Bluesky (AT Protocol): a post is an `app.bsky.feed.post` record created in the account's
repository on its PDS with `com.atproto.repo.createRecord` (PLATFORMS.md §3).

Credentials read:
- `instance_url`: the account's PDS; without one, the `bluesky` base URL (https://bsky.social).
- `access_token` and `refresh_token`: the session's accessJwt and refreshJwt.
- `extra["did"]`: the repository to write to. When it is missing, `getSession` on the access
  token tells it (each time; a refresh returns it in `RefreshedTokens.extra` so it is saved).
- `handle` (else `extra["handle"]`): the login identifier, and the profile in public URLs (the
  did stands in without one).
- `extra["app_password"]` (optional): opens a new session with `createSession` when there is no
  session or the refresh JWT is no longer good. Sessions are reused, not opened per post, since
  createSession is limited to 30 per five minutes.

`platform_post_id` is the post's at-uri, `at://<did>/app.bsky.feed.post/<rkey>`. A reply needs
strong refs (uri and cid) to its parent and to its thread's root; rather than pack them into the
id, the client reads the parent back with `getRecord`: its cid, and its own `reply.root` (the
root when the parent is itself a reply, else the parent is the root). So the id stays the
platform's own, and a thread resumes from whichever part was published last.

Links become `app.bsky.richtext.facet#link` facets (offsets in UTF-8 bytes), since Bluesky does
not link bare URLs. Images are downloaded (at most 4, each at most 1,000,000 bytes), uploaded
as raw bytes with `uploadBlob` and embedded as `app.bsky.embed.images` with an empty alt text.
There is no idempotency key: a createRecord that times out after it was sent is UNKNOWN, while
a timeout in any call before it is retryable, as nothing is posted yet.

Errors: 400 `ExpiredToken`/`InvalidToken` and 401 are AUTH (Bluesky signals an expired token
with 400); 429 and 5xx are retryable, a 429 until its `ratelimit-reset`; other 4xx (such as
`InvalidRequest` and `BlobTooLarge`) are permanent with the PDS's own message. Every answer's
`ratelimit-remaining`/`ratelimit-reset` headers set `blocked_until` when the budget is spent.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from kairos_publisher.media import IMAGE_TYPES, MediaError, MediaFetcher
from kairos_publisher.platforms.base import (
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    RefreshedTokens,
    Result,
    classify_http,
    epoch,
    excerpt,
    json_object,
    media_failed,
    retry_after,
    send,
)

DEFAULT_PDS = "https://bsky.social"
POST = "app.bsky.feed.post"
MAX_IMAGES = 4
MAX_IMAGE_BYTES = 1_000_000
#: XRPC error names that mean the session is no good (sent with HTTP 400, not 401).
AUTH_ERRORS = frozenset({"ExpiredToken", "InvalidToken", "AuthenticationRequired"})
#: An http(s) URL up to whitespace or a character that cannot end one in running text.
URL = re.compile(r"(?<![\w/@.])https?://[^\s<>\"'`]+")
#: Punctuation that ends a sentence rather than the URL before it.
TRAILING = ".,;:!?'\")]}"

Json = dict[str, Any]


def link_facets(text: str) -> list[Json]:
    """A link facet for every http(s) URL in `text`, indexed in UTF-8 bytes as Bluesky wants."""
    facets: list[Json] = []
    for match in URL.finditer(text):
        url = trim_url(match.group())
        if "." not in url.partition("://")[2]:
            continue
        start = len(text[: match.start()].encode())
        facets.append(
            {
                "index": {"byteStart": start, "byteEnd": start + len(url.encode())},
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": url}],
            }
        )
    return facets


def trim_url(url: str) -> str:
    """`url` without the punctuation that closes the sentence around it; a closing bracket
    stays when the URL opened one itself (Wikipedia-style links)."""
    while url and url[-1] in TRAILING:
        closing = url[-1]
        opening = {")": "(", "]": "[", "}": "{"}.get(closing)
        if opening and url.count(opening) >= url.count(closing):
            break
        url = url[:-1]
    return url


def iso_now() -> str:
    """Now as the lexicon's datetime: RFC 3339 in UTC with milliseconds and a `Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def jwt_expiry(token: str) -> datetime | None:
    """The `exp` claim of a JWT (accessJwt is one), read without verifying it: only to know
    when to refresh."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return datetime.fromtimestamp(float(claims["exp"]), UTC)
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        return None


def at_uri_parts(uri: str) -> tuple[str, str, str] | None:
    """(repo, collection, rkey) of `at://<repo>/<collection>/<rkey>`."""
    if not uri.startswith("at://"):
        return None
    parts = uri.removeprefix("at://").split("/")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def strong_ref(value: object) -> Json | None:
    """`{"uri", "cid"}` when `value` is a strong ref, else None."""
    if not isinstance(value, dict):
        return None
    uri, cid = value.get("uri"), value.get("cid")
    if isinstance(uri, str) and isinstance(cid, str) and uri and cid:
        return {"uri": uri, "cid": cid}
    return None


def xrpc_error(response: httpx.Response) -> tuple[str, str]:
    """The XRPC error name and message of an answer, else ("", an excerpt of the body)."""
    try:
        data = response.json()
    except ValueError:
        return "", excerpt(response)
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"], str(data.get("message", ""))[:500]
    return "", excerpt(response)


def classify(response: httpx.Response) -> PublishOutcome:
    """An unsuccessful XRPC answer as an outcome, keeping the error name and message."""
    status = response.status_code
    name, message = xrpc_error(response)
    code = name or str(status)
    if status in (408, 429) or status >= 500:
        wait = epoch(response.headers.get("ratelimit-reset")) if status == 429 else None
        return PublishOutcome(
            Result.RETRYABLE,
            http_status=status,
            code=code,
            message=message,
            retry_not_before=wait or retry_after(response),
        )
    if name in AUTH_ERRORS or status in (401, 403):
        return PublishOutcome(Result.AUTH, http_status=status, code=code, message=message)
    return PublishOutcome(Result.PERMANENT, http_status=status, code=code, message=message)


def nothing_posted(outcome: PublishOutcome) -> PublishOutcome:
    """A transport outcome of a call made before createRecord: a timeout there posted nothing,
    so it is retryable rather than UNKNOWN."""
    if outcome.result == Result.UNKNOWN:
        return replace(outcome, result=Result.RETRYABLE)
    return outcome


class Calls:
    """The XRPC calls of one publish or refresh, and the rate-limit block their headers set."""

    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base
        self.blocked_until: datetime | None = None

    async def call(
        self,
        method: str,
        nsid: str,
        *,
        token: str = "",
        params: dict[str, str] | None = None,
        body: Json | None = None,
        content: bytes | None = None,
        content_type: str = "",
    ) -> httpx.Response | PublishOutcome:
        headers = {"accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        if content_type:
            headers["content-type"] = content_type
        outgoing = self.http.build_request(
            method,
            f"{self.base}/xrpc/{nsid}",
            params=params,
            json=body,
            content=content,
            headers=headers,
        )
        response = await send(self.http, outgoing)
        if isinstance(response, httpx.Response):
            self.note_limits(response)
        return response

    def note_limits(self, response: httpx.Response) -> None:
        """Block the account until the reset when the budget is spent (or a 429 says wait)."""
        reset = epoch(response.headers.get("ratelimit-reset"))
        if response.status_code == 429:
            until = reset or retry_after(response)
        elif response.headers.get("ratelimit-remaining", "").strip() == "0":
            until = reset
        else:
            return
        if until is not None and (self.blocked_until is None or until > self.blocked_until):
            self.blocked_until = until

    def finish(self, outcome: PublishOutcome) -> PublishOutcome:
        if self.blocked_until is None:
            return outcome
        return replace(outcome, blocked_until=self.blocked_until)


class BlueskyClient:
    """Publishes to the account's PDS with its session, refreshing or reopening it on demand."""

    #: The access JWT lasts about two hours; refresh shortly before it runs out.
    refresh_margin = timedelta(minutes=5)

    def __init__(self, http: httpx.AsyncClient, media: MediaFetcher, default_base: str) -> None:
        self.http = http
        self.media = media
        self.default_base = default_base

    def base(self, request: PublishRequest) -> str:
        return request.instance_url.rstrip("/") or self.default_base

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        if not request.access_token:
            return PublishOutcome(
                Result.AUTH,
                code="no_session",
                message="no Bluesky session; a refresh opens one with the app password",
            )
        calls = Calls(self.http, self.base(request))
        return calls.finish(await self.post(calls, request))

    async def post(self, calls: Calls, request: PublishRequest) -> PublishOutcome:
        did = request.extra.get("did", "")
        if not did:
            found = await self.session_did(calls, request.access_token)
            if isinstance(found, PublishOutcome):
                return found
            did = found
        record: Json = {
            "$type": POST,
            "text": request.content,
            "createdAt": iso_now(),
            "facets": link_facets(request.content),
        }
        if request.reply_to:
            reply = await self.reply_refs(calls, request.reply_to)
            if isinstance(reply, PublishOutcome):
                return reply
            record["reply"] = reply
        if request.media:
            embed = await self.images(calls, request)
            if isinstance(embed, PublishOutcome):
                return embed
            record["embed"] = embed
        response = await calls.call(
            "POST",
            "com.atproto.repo.createRecord",
            token=request.access_token,
            body={"repo": did, "collection": POST, "record": record},
        )
        if isinstance(response, PublishOutcome):
            return response
        if not response.is_success:
            return classify(response)
        try:
            uri = str(response.json()["uri"])
        except (ValueError, KeyError, TypeError):
            return PublishOutcome(
                Result.UNKNOWN,
                http_status=response.status_code,
                message="createRecord succeeded without a uri in the answer",
            )
        profile = request.handle or request.extra.get("handle", "") or did
        return PublishOutcome(
            Result.PUBLISHED,
            platform_post_id=uri,
            url=f"https://bsky.app/profile/{profile}/post/{uri.rsplit('/', 1)[-1]}",
            http_status=response.status_code,
        )

    async def session_did(self, calls: Calls, token: str) -> str | PublishOutcome:
        """The did of the session's account, for an account saved without one."""
        response = await calls.call("GET", "com.atproto.server.getSession", token=token)
        if isinstance(response, PublishOutcome):
            return nothing_posted(response)
        if not response.is_success:
            return classify(response)
        try:
            return str(response.json()["did"])
        except (ValueError, KeyError, TypeError):
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=response.status_code,
                code="no_did",
                message="getSession answered without a did",
            )

    async def reply_refs(self, calls: Calls, parent_uri: str) -> Json | PublishOutcome:
        """`{"root", "parent"}` strong refs for a reply to `parent_uri`, read from the parent."""
        parts = at_uri_parts(parent_uri)
        if parts is None:
            return PublishOutcome(
                Result.PERMANENT,
                code="bad_reply_to",
                message=f"reply_to {parent_uri!r} is not an at:// uri of a post",
            )
        repo, collection, rkey = parts
        response = await calls.call(
            "GET",
            "com.atproto.repo.getRecord",
            params={"repo": repo, "collection": collection, "rkey": rkey},
        )
        if isinstance(response, PublishOutcome):
            return nothing_posted(response)
        if not response.is_success:
            return classify(response)
        data = json_object(response)
        parent = root = None
        if data:
            parent = strong_ref({"uri": data.get("uri") or parent_uri, "cid": data.get("cid")})
            value = data.get("value")
            thread = value.get("reply") if isinstance(value, dict) else None
            root = strong_ref(thread.get("root")) if isinstance(thread, dict) else None
        if parent is None:
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=response.status_code,
                code="no_cid",
                message=f"getRecord of {parent_uri} answered without a cid",
            )
        return {"root": root or parent, "parent": parent}

    async def images(self, calls: Calls, request: PublishRequest) -> Json | PublishOutcome:
        """Download and upload each image; the `app.bsky.embed.images` embed of their blobs."""
        if len(request.media) > MAX_IMAGES:
            return PublishOutcome(
                Result.PERMANENT,
                code="too_many_images",
                message=f"{len(request.media)} images; Bluesky takes at most {MAX_IMAGES}",
            )
        images: list[Json] = []
        for source in request.media:
            try:
                media = await self.media.fetch(source, max_bytes=MAX_IMAGE_BYTES, types=IMAGE_TYPES)
            except MediaError as error:
                return media_failed(error)
            response = await calls.call(
                "POST",
                "com.atproto.repo.uploadBlob",
                token=request.access_token,
                content=media.content,
                content_type=media.content_type,
            )
            if isinstance(response, PublishOutcome):
                return nothing_posted(response)
            if not response.is_success:
                return classify(response)
            try:
                blob = response.json()["blob"]
            except (ValueError, KeyError, TypeError):
                blob = None
            if not isinstance(blob, dict):
                return PublishOutcome(
                    Result.RETRYABLE,
                    http_status=response.status_code,
                    code="no_blob",
                    message="uploadBlob answered without a blob",
                )
            images.append({"alt": "", "image": blob})
        return {"$type": "app.bsky.embed.images", "images": images}

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str | PublishOutcome:
        """A new session: refreshSession with the refresh JWT (single use: it rotates), else,
        when an app password is known, createSession. A PDS that cannot answer now (network,
        429, 5xx) gives its outcome: the session may still be good later."""
        calls = Calls(self.http, self.base(request))
        failures: list[str] = []
        if request.refresh_token:
            response = await calls.call(
                "POST", "com.atproto.server.refreshSession", token=request.refresh_token
            )
            session = self.session(response)
            if not isinstance(session, str):
                return session
            failures.append(f"refreshSession: {session}")
        password = request.extra.get("app_password", "")
        identifier = request.handle or request.extra.get("handle", "") or request.extra.get("did")
        if password and identifier:
            response = await calls.call(
                "POST",
                "com.atproto.server.createSession",
                body={"identifier": identifier, "password": password},
            )
            session = self.session(response)
            if not isinstance(session, str):
                return session
            failures.append(f"createSession: {session}")
        elif not failures:
            return "no refresh JWT and no app password to open a session with"
        return "; ".join(failures)

    @staticmethod
    def session(
        response: httpx.Response | PublishOutcome,
    ) -> RefreshedTokens | str | PublishOutcome:
        """The tokens of a createSession/refreshSession answer, why there are none, or the
        outcome of a PDS that could not answer now."""
        if isinstance(response, PublishOutcome):
            return response
        if response.status_code == 429 or response.status_code >= 500:
            return classify_http(response)
        if not response.is_success:
            name, message = xrpc_error(response)
            label = f"HTTP {response.status_code} {name}".rstrip()
            return f"{label}: {message}"
        try:
            data = response.json()
            access, refresh, did = str(data["accessJwt"]), str(data["refreshJwt"]), data["did"]
        except (ValueError, KeyError, TypeError):
            return "session answer without tokens"
        extra = {"did": str(did)}
        if isinstance(data.get("handle"), str):
            extra["handle"] = data["handle"]
        return RefreshedTokens(access, refresh, jwt_expiry(access), extra)


def create(context: PlatformContext) -> BlueskyClient:
    return BlueskyClient(context.http, context.media, context.url("bluesky", DEFAULT_PDS))

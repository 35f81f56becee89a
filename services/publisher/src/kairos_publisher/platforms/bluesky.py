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

A video (at most 100 MB; its length was checked by the api) goes through the video service as
docs.bsky.app "Uploading Video" recommends, so the post never shows a video still encoding:
`getUploadLimits` with a service token for `did:web:video.bsky.app` (a spent daily allowance is
retryable, any other refusal permanent); `uploadVideo?did=&name=` with the bytes streamed from
the media store and a 30-minute service token for the account's PDS bound to `uploadBlob`
(the video service stores the encoded file there with it); then `getJobStatus` every 1.5 s
(`stage.pause`, so no call slot is held) until the job gives its blob, for at most
`VIDEO_WAIT_SECONDS` (10 minutes) of waiting, after which the attempt is retryable: nothing is
public, and the service answers the next upload of the same file with 409 `already_exists` and
the same job. A failed job is permanent with the service's words. The record then embeds
`app.bsky.embed.video` with the blob and the probed aspect ratio, and `stage.publishing()` is
awaited right before that createRecord. The video service's base URL is `bluesky.video` in
`KAIROS_PLATFORM_URLS` (else the `bluesky` override, else https://video.bsky.app).

Errors: 400 `ExpiredToken`/`InvalidToken` and 401 are AUTH (Bluesky signals an expired token
with 400); 429 and 5xx are retryable, a 429 until its `ratelimit-reset`; other 4xx (such as
`InvalidRequest` and `BlobTooLarge`) are permanent with the PDS's own message. Every answer's
`ratelimit-remaining`/`ratelimit-reset` headers set `blocked_until` when the budget is spent.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from kairos_publisher.media import IMAGE_TYPES, MediaError, MediaFetcher, StoredMedia
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
    nothing_posted,
    retry_after,
    send,
)
from kairos_publisher.upload import send_upload

DEFAULT_PDS = "https://bsky.social"
POST = "app.bsky.feed.post"
MAX_IMAGES = 4
MAX_IMAGE_BYTES = 1_000_000
#: The video service, unless `KAIROS_PLATFORM_URLS` names another (`bluesky.video=...`), and
#: the did a token for its own methods must name (social-app src/lib/constants.ts).
VIDEO_SERVICE = "https://video.bsky.app"
VIDEO_SERVICE_DID = "did:web:video.bsky.app"
UPLOAD_BLOB = "com.atproto.repo.uploadBlob"
UPLOAD_LIMITS = "app.bsky.video.getUploadLimits"
#: The largest video the service takes from any account: 100 MB, ISO megabytes (social-app
#: #7916, its constants.ts "Backend uses ISO megabytes"); 300 MB is feature-gated (#10497).
MAX_VIDEO_BYTES = 100_000_000
#: The upload's service token lives 30 minutes, as the docs recommend for a large file (the PDS
#: allows an hour at most).
UPLOAD_TOKEN_SECONDS = 30 * 60
#: Between two getJobStatus polls: social-app polls every 1.5 s, the docs' example every second.
VIDEO_POLL_SECONDS = 1.5
#: How long a job may encode before the attempt gives up (RETRYABLE: nothing is public, and the
#: next attempt finds the job again through the service's `already_exists`). Bluesky's videos
#: last at most 3 minutes and encode in well under this.
VIDEO_WAIT_SECONDS = 10 * 60
JOB_FAILED = "JOB_STATE_FAILED"
JOB_COMPLETED = "JOB_STATE_COMPLETED"
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


def jwt_claims(token: str) -> Json:
    """The claims of a JWT (accessJwt is one), read without verifying it, or {}."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def jwt_expiry(token: str) -> datetime | None:
    """The `exp` claim of a JWT, read without verifying it: only to know when to refresh."""
    try:
        return datetime.fromtimestamp(float(jwt_claims(token)["exp"]), UTC)
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        return None


def pds_audience(access_token: str, base: str) -> str:
    """The did of the account's PDS, which a token the video service hands on to it must name:
    the access JWT's `aud` (the PDS puts its own did there; MarshalX/atproto's video example
    reads it the same way), else the did:web of the PDS's host, as social-app derives it."""
    aud = jwt_claims(access_token).get("aud")
    if isinstance(aud, str) and aud.startswith("did:"):
        return aud
    return "did:web:" + urlsplit(base).netloc.replace(":", "%3A")


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


def job_of(response: httpx.Response) -> Json:
    """The jobStatus of a video service answer: wrapped in `jobStatus` as the lexicon has it
    (getJobStatus), or bare, as uploadVideo really answers (atproto #3026, #3097)."""
    body = json_object(response)
    inner = body.get("jobStatus")
    return inner if isinstance(inner, dict) else body


def video_service_error(response: httpx.Response, status: Json) -> PublishOutcome:
    """An unsuccessful video service answer. Nothing is public yet, so 429, 5xx and an expired
    service token (`JwtExpired`: the next attempt asks for a new one) are retryable; a refusal
    of the account (its `error` names a daily limit: retryable, else permanent) and any other
    4xx are permanent, in the service's words. A 401 here is about the service token, not the
    session, so it is never AUTH."""
    code = str(status.get("error") or response.status_code)
    words = [str(status[key]) for key in ("message", "error") if status.get(key)]
    message = "; ".join(dict.fromkeys(words)) or excerpt(response)
    retryable = (
        response.status_code in (408, 429)
        or response.status_code >= 500
        or code == "JwtExpired"
        or "daily" in message
    )
    return PublishOutcome(
        Result.RETRYABLE if retryable else Result.PERMANENT,
        http_status=response.status_code,
        code=code[:100],
        message=message[:500],
        retry_not_before=retry_after(response) if retryable else None,
    )


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

    def __init__(
        self,
        http: httpx.AsyncClient,
        media: MediaFetcher,
        default_base: str,
        video_base: str = VIDEO_SERVICE,
    ) -> None:
        self.http = http
        self.media = media
        self.default_base = default_base
        self.video_base = video_base
        #: The longest a video may encode before the attempt is given up as retryable.
        self.video_wait: float = VIDEO_WAIT_SECONDS

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
        video = request.video
        if video is not None:
            embed = await self.video(calls, request, did, video)
            if isinstance(embed, PublishOutcome):
                return embed
            record["embed"] = embed
            # Nothing is public until the record exists: everything before this may be redone.
            refused = await request.stage.publishing()
            if refused is not None:
                return refused
        elif request.media:
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

    async def video(
        self, calls: Calls, request: PublishRequest, did: str, video: StoredMedia
    ) -> Json | PublishOutcome:
        """The `app.bsky.embed.video` of the post's video, sent through the video service as
        docs.bsky.app "Uploading Video" recommends: the account's upload limits, the raw bytes
        to uploadVideo with a service token for the account's PDS, then getJobStatus until the
        job hands back the blob it stored in the repo."""
        if video.size > MAX_VIDEO_BYTES:
            return PublishOutcome(
                Result.PERMANENT,
                code="video_too_large",
                message=f"{video.size} bytes; Bluesky takes videos of at most {MAX_VIDEO_BYTES}",
            )
        allowed = await self.video_allowed(calls, request, video)
        if allowed is not None:
            return allowed
        token = await self.service_token(
            calls,
            request,
            pds_audience(request.access_token, calls.base),
            UPLOAD_BLOB,
            UPLOAD_TOKEN_SECONDS,
        )
        if isinstance(token, PublishOutcome):
            return token
        outgoing = self.http.build_request(
            "POST",
            f"{self.video_base}/xrpc/app.bsky.video.uploadVideo",
            params={"did": did, "name": video.filename},
            content=self.media.stream(video),
            headers={
                "authorization": f"Bearer {token}",
                "content-type": video.content_type,
                "content-length": str(video.size),
                "accept": "application/json",
            },
        )
        answer = await send_upload(self.http, outgoing)
        if isinstance(answer, PublishOutcome):
            return answer
        status = job_of(answer)
        # A video the service has seen before answers 409 `already_exists` with its job.
        known = answer.status_code == 409 and status.get("error") == "already_exists"
        if not (answer.is_success or known) or not status.get("jobId"):
            return video_service_error(answer, status)
        blob = await self.processed_blob(request, str(status["jobId"]), status)
        if isinstance(blob, PublishOutcome):
            return blob
        embed: Json = {"$type": "app.bsky.embed.video", "video": blob}
        if video.width > 0 and video.height > 0:
            embed["aspectRatio"] = {"width": video.width, "height": video.height}
        return embed

    async def video_allowed(
        self, calls: Calls, request: PublishRequest, video: StoredMedia
    ) -> PublishOutcome | None:
        """None when getUploadLimits lets the account upload this video today, else why not:
        a daily limit is retryable (it resets), anything else (email not verified, account too
        new, uploads disabled for it) permanent, in the service's words."""
        token = await self.service_token(calls, request, VIDEO_SERVICE_DID, UPLOAD_LIMITS)
        if isinstance(token, PublishOutcome):
            return token
        response = await send(
            self.http,
            self.http.build_request(
                "GET",
                f"{self.video_base}/xrpc/{UPLOAD_LIMITS}",
                headers={"authorization": f"Bearer {token}", "accept": "application/json"},
            ),
        )
        if isinstance(response, PublishOutcome):
            return nothing_posted(response)
        if not response.is_success:
            return video_service_error(response, json_object(response))
        limits = json_object(response)
        videos = limits.get("remainingDailyVideos")
        size = limits.get("remainingDailyBytes")
        message = str(limits.get("message") or limits.get("error") or "")
        short_of_bytes = isinstance(size, int) and size < video.size
        if limits.get("canUpload") is not False and videos != 0 and not short_of_bytes:
            return None
        if videos == 0 or short_of_bytes or "daily" in message:
            return PublishOutcome(
                Result.RETRYABLE,
                code="video_daily_limit",
                message=message
                or f"{videos} videos and {size} bytes left today; the video is {video.size}",
            )
        return PublishOutcome(
            Result.PERMANENT,
            code="video_not_allowed",
            message=message or "the video service does not let this account upload videos",
        )

    async def service_token(
        self,
        calls: Calls,
        request: PublishRequest,
        audience: str,
        method: str,
        lifetime: float = 0,
    ) -> str | PublishOutcome:
        """A service token from the PDS for `audience`, bound to `method`."""
        params = {"aud": audience, "lxm": method}
        if lifetime:
            params["exp"] = str(int(time.time() + lifetime))
        response = await calls.call(
            "GET",
            "com.atproto.server.getServiceAuth",
            token=request.access_token,
            params=params,
        )
        if isinstance(response, PublishOutcome):
            return nothing_posted(response)
        if not response.is_success:
            return classify(response)
        token = json_object(response).get("token")
        if not isinstance(token, str) or not token:
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=response.status_code,
                code="no_token",
                message="getServiceAuth answered without a token",
            )
        return token

    async def processed_blob(
        self, request: PublishRequest, job_id: str, status: Json
    ) -> Json | PublishOutcome:
        """The blob of a finished job, polling getJobStatus (the call slot given back between
        polls) for at most `video_wait` seconds of pauses. The docs say to take a blob whenever
        one is given, whatever the state says."""
        waited = 0.0
        polled = False
        while True:
            blob = status.get("blob")
            if isinstance(blob, dict):
                return blob
            state = status.get("state")
            if state == JOB_FAILED:
                words = [str(status[key]) for key in ("message", "error") if status.get(key)]
                return PublishOutcome(
                    Result.PERMANENT,
                    code=str(status.get("failureCode") or "video_failed"),
                    message=("Bluesky could not process the video: " + "; ".join(words))[:500],
                )
            if polled and state == JOB_COMPLETED:
                return PublishOutcome(
                    Result.RETRYABLE,
                    code="no_blob",
                    message=f"video job {job_id} completed without a blob",
                )
            if waited >= self.video_wait:
                return PublishOutcome(
                    Result.RETRYABLE,
                    code="video_processing",
                    message=f"video job {job_id} still {state} after {waited:g} s",
                )
            await request.stage.pause(VIDEO_POLL_SECONDS)
            waited += VIDEO_POLL_SECONDS
            response = await send(
                self.http,
                self.http.build_request(
                    "GET",
                    f"{self.video_base}/xrpc/app.bsky.video.getJobStatus",
                    params={"jobId": job_id},
                    headers={"accept": "application/json"},
                ),
            )
            if isinstance(response, PublishOutcome):
                return nothing_posted(response)
            if not response.is_success:
                return video_service_error(response, json_object(response))
            status = job_of(response)
            polled = True

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
    return BlueskyClient(
        context.http,
        context.media,
        context.url("bluesky", DEFAULT_PDS),
        context.url("bluesky.video", VIDEO_SERVICE),
    )

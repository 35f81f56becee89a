"""LinkedIn: posts through the versioned Posts API (`POST /rest/posts`); replies are comments.

Credentials read: `access_token`; `page_id`, the author URN (`urn:li:person:<id>` or
`urn:li:organization:<id>`); `refresh_token`, which LinkedIn issues only to approved partners
(without one, `refresh` says the member must re-authorize); `expires_at` (the publisher refreshes
a day before it); and for refreshing, `extra["client_id"]`/`extra["client_secret"]` or
`KAIROS_LINKEDIN_CLIENT_ID`/`KAIROS_LINKEDIN_CLIENT_SECRET`. The `LinkedIn-Version` header is
`KAIROS_LINKEDIN_VERSION` (default `base.LINKEDIN_VERSION`), or a target's
`settings["linkedin_version"]`; LinkedIn retires a version about a year after release (HTTP 426
`NONEXISTENT_VERSION`, treated as permanent: only a new version helps).

platform_post_id: the URN LinkedIn answers with. For a post it is the `x-restli-id` header of the
201 (`urn:li:share:<id>` or `urn:li:ugcPost:<id>`), shown at
`https://www.linkedin.com/feed/update/<urn>/`. LinkedIn has no threads, so a reply is a comment,
and its id is the body's `commentUrn`, `urn:li:comment:(<post urn>,<comment id>)`: the bare
comment id in `x-restli-id` would not say which post a later reply belongs to, and the URN does.
A thread chains: part 2 comments on the post, part 3 replies to part 2's comment (`parentComment`,
with `object` the post named in the comment URN), and so on, each on the part before it.

Text: the post's `commentary` is in LinkedIn's "little" format, where the reserved characters
must be backslash-escaped or the post may be cut short; comment text is plain. Images (JPG, PNG,
GIF, at most 10 MB, 1 to 20 per post) are downloaded and uploaded first (`initializeUpload`, then
a PUT of the bytes); a failure there published nothing, so it is retryable. Comments take no
images here. LinkedIn sends no rate-limit headers and a bare 429 (daily quotas that reset at
midnight UTC, or load shedding), so a 429 is retryable with no wait of the platform's own and
`blocked_until` is never set.

A video (MP4, 75 KB to 500 MB; its length of 3 s to 30 min was checked by the api) goes
through the Videos API: `initializeUpload` (owner, `fileSizeBytes`, no captions or thumbnail)
gives the video's URN, an `uploadToken` and one instruction per 4 MB part; each part is streamed
from the media store and PUT to its pre-signed URL (no token), whose `ETag` names it;
`finalizeUpload` hands back the URN, the token and the ETags in order; then `GET
/rest/videos/{urn}` every 5 s (`stage.pause`, so no call slot is held) until it is AVAILABLE,
for at most `VIDEO_WAIT_SECONDS` (15 minutes) of waiting, after which the attempt is retryable
(nothing is public; the next one uploads again). PROCESSING_FAILED is permanent. The post then
names the video in `content.media.id`, and `stage.publishing()` is awaited right before it.
Every `/rest` call of the upload carries the same `LinkedIn-Version` as the post.

Duplicates: LinkedIn answers 422 `DUPLICATE_POST`, naming the existing post ("Content is a
duplicate of urn:li:share:<id>"), for any earlier post of the author with the same text, an older
and different one (even a deleted one) included. So it counts as this target's own post, and the
target as published with that URN, only when this target had an earlier attempt whose outcome was
lost (`request.earlier_outcome_lost`: it ended UNKNOWN or never reported back), whose call may have
created it. Otherwise nothing of this target's was posted: the target fails (PERMANENT), naming
the existing URN, and the member decides (change the text, or delete the old post and retry).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from kairos_publisher.media import IMAGE_TYPES, MediaError, MediaSource, StoredMedia
from kairos_publisher.platforms.base import (
    LINKEDIN_VERSION,
    PlatformContext,
    PublishOutcome,
    PublishRequest,
    RefreshedTokens,
    Result,
    classify_http,
    excerpt,
    json_object,
    media_failed,
    nothing_posted,
    send,
)
from kairos_publisher.upload import send_upload

#: The `LinkedIn-Version` sent by default (YYYYMM); see `base.LINKEDIN_VERSION`.
VERSION = LINKEDIN_VERSION
API = "https://api.linkedin.com"
OAUTH = "https://www.linkedin.com"
FEED = "https://www.linkedin.com/feed/update"
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGES = 20
#: LinkedIn takes JPG, PNG and GIF images; not WebP.
LINKEDIN_IMAGE_TYPES = IMAGE_TYPES & {"image/jpeg", "image/png", "image/gif"}
#: Characters the little text format reserves; each must be preceded by a backslash.
#: The Videos API's "Video File Size Specifications": MP4, 75 KB to 500 MB (its MB is 2^20
#: bytes, as its 4 MB parts are 4,194,304), 3 seconds to 30 minutes (the api checks the length).
VIDEO_TYPES = frozenset({"video/mp4"})
MIN_VIDEO_BYTES = 75 * 1024
MAX_VIDEO_BYTES = 500 * 1024 * 1024
#: Between two GETs of a processing video. LinkedIn names no interval; 5 s is Kairos's own.
VIDEO_POLL_SECONDS = 5.0
#: How long a video may process before the attempt gives up as retryable (nothing is public;
#: the next attempt uploads again). Kairos's own bound: LinkedIn documents none.
VIDEO_WAIT_SECONDS = 15 * 60
RESERVED = re.compile(r"([\\|{}@\[\]()<>#*_~])")
DUPLICATE_OF = re.compile(r"duplicate of (urn:li:[A-Za-z]+:\d+)")
COMMENT_URN = re.compile(r"^urn:li:comment:\((urn:li:[A-Za-z]+:[^,]+),[^)]+\)$")


def little_text(text: str) -> str:
    """`text` escaped for the little text format, so it shows literally."""
    return RESERVED.sub(r"\\\1", text)


def post_url(urn: str) -> str:
    return f"{FEED}/{urn}/"


def error_outcome(response: httpx.Response) -> PublishOutcome:
    """An unsuccessful answer classified by LinkedIn's rules, with its own code and message.

    Bodies look like `{"status","serviceErrorCode","code","message"}`, validation errors add
    `errorDetails.inputErrors[].code`. 401 is an expired or revoked token (AUTH); 403 a missing
    permission (PERMANENT, a refresh cannot add a scope); 429 and 5xx retry; the rest (400, 422,
    426) need a change first.
    """
    status = response.status_code
    body = json_object(response)
    message = str(body.get("message", "")) or excerpt(response)
    code = _error_code(body) or str(status)
    if status == 401:
        result = Result.AUTH
    elif status in (408, 429) or status >= 500:
        result = Result.RETRYABLE
    else:
        result = Result.PERMANENT
    return PublishOutcome(result, http_status=status, code=code, message=message[:500])


def _error_code(body: dict[str, Any]) -> str:
    if body.get("code"):
        return str(body["code"])
    details = body.get("errorDetails")
    inputs = details.get("inputErrors") if isinstance(details, dict) else None
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
        return str(inputs[0].get("code", ""))
    return str(body.get("serviceErrorCode", ""))


class LinkedInClient:
    """Publishes to LinkedIn as the account's author URN; refreshes where LinkedIn allows."""

    #: Access tokens last 60 days; refreshing a day early leaves room for a failed attempt.
    refresh_margin = timedelta(days=1)

    def __init__(self, context: PlatformContext) -> None:
        self.context = context
        self.http = context.http
        self.api = context.url("linkedin", API)
        self.oauth = context.url("linkedin.oauth", OAUTH)
        #: The longest a video may process before the attempt is given up as retryable.
        self.video_wait: float = VIDEO_WAIT_SECONDS

    def headers(self, request: PublishRequest) -> dict[str, str]:
        """What every `/rest` call must carry; LinkedIn refuses a call missing any of them."""
        return {
            "authorization": f"Bearer {request.access_token}",
            "linkedin-version": (
                request.settings.get("linkedin_version") or self.context.linkedin_version
            ),
            "x-restli-protocol-version": "2.0.0",
            "content-type": "application/json",
        }

    async def publish(self, request: PublishRequest) -> PublishOutcome:
        if not request.page_id.startswith("urn:li:"):
            return PublishOutcome(
                Result.PERMANENT, code="no_author", message="the account has no author URN"
            )
        if request.reply_to:
            if request.media or request.video is not None:
                return PublishOutcome(
                    Result.PERMANENT,
                    code="media_on_comment",
                    message="a LinkedIn reply is a comment, and comments here take no media",
                )
            return await self.comment(request)
        video = request.video
        if video is not None:
            uploaded = await self.upload_video(request, video)
            if isinstance(uploaded, PublishOutcome):
                return uploaded
            return await self.post(request, [uploaded])
        if len(request.media) > MAX_IMAGES:
            return PublishOutcome(
                Result.PERMANENT,
                code="too_many_images",
                message=f"LinkedIn takes at most {MAX_IMAGES} images per post",
            )
        images: list[str] = []
        for source in request.media:
            uploaded = await self.upload(request, source)
            if isinstance(uploaded, PublishOutcome):
                return uploaded
            images.append(uploaded)
        return await self.post(request, images)

    async def post(self, request: PublishRequest, images: list[str]) -> PublishOutcome:
        """The post, with `images` (or the one uploaded video) as its content."""
        body: dict[str, Any] = {
            "author": request.page_id,
            "commentary": little_text(request.content),
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        if len(images) == 1:
            body["content"] = {"media": {"id": images[0]}}
        elif images:
            body["content"] = {"multiImage": {"images": [{"id": urn} for urn in images]}}
        if request.video is not None:
            # Nothing is public until this post exists: everything before it may be redone.
            refused = await request.stage.publishing()
            if refused is not None:
                return refused
        response = await send(
            self.http,
            self.http.build_request(
                "POST",
                f"{self.api}/rest/posts",
                content=json.dumps(body).encode(),
                headers=self.headers(request),
            ),
        )
        if isinstance(response, PublishOutcome):
            return response
        if response.status_code == 201:
            urn = response.headers.get("x-restli-id", "")
            if not urn:
                return PublishOutcome(
                    Result.UNKNOWN,
                    http_status=201,
                    message="created without an x-restli-id header",
                )
            return PublishOutcome(
                Result.PUBLISHED, platform_post_id=urn, url=post_url(urn), http_status=201
            )
        outcome = error_outcome(response)
        existing = DUPLICATE_OF.search(outcome.message)
        if response.status_code != 422 or outcome.code != "DUPLICATE_POST" or not existing:
            return outcome
        urn = existing.group(1)
        if request.earlier_outcome_lost:  # this target's own earlier call may have made it
            return PublishOutcome(
                Result.PUBLISHED,
                platform_post_id=urn,
                url=post_url(urn),
                http_status=422,
                code=outcome.code,
                message=outcome.message,
            )
        return PublishOutcome(
            Result.PERMANENT,
            http_status=422,
            code=outcome.code,
            message=(
                f"LinkedIn already has a post with this text, {urn} ({post_url(urn)}), which "
                f"this target did not make: change the text, or delete that post and retry. "
                f"LinkedIn: {outcome.message}"
            )[:500],
        )

    async def comment(self, request: PublishRequest) -> PublishOutcome:
        """A comment on `reply_to`: on the post itself, or as a reply to an earlier comment."""
        parent = request.reply_to
        body: dict[str, Any] = {
            "actor": request.page_id,
            "object": parent,
            "message": {"text": request.content},
        }
        on_comment = COMMENT_URN.match(parent)
        if on_comment:
            body["object"] = on_comment.group(1)
            body["parentComment"] = parent
        response = await send(
            self.http,
            self.http.build_request(
                "POST",
                f"{self.api}/rest/socialActions/{quote(parent, safe='')}/comments",
                content=json.dumps(body).encode(),
                headers=self.headers(request),
            ),
        )
        if isinstance(response, PublishOutcome):
            return response
        if response.status_code != 201:
            return error_outcome(response)
        urn = str(json_object(response).get("commentUrn", ""))
        if not urn:
            return PublishOutcome(
                Result.UNKNOWN, http_status=201, message="comment created without a commentUrn"
            )
        post = str(body["object"])
        return PublishOutcome(
            Result.PUBLISHED,
            platform_post_id=urn,
            url=f"{post_url(post)}?commentUrn={quote(urn, safe='')}",
            http_status=201,
        )

    async def upload(self, request: PublishRequest, source: MediaSource) -> str | PublishOutcome:
        """Download one image and upload it; its `urn:li:image:…`, or why that failed."""
        try:
            media = await self.context.media.fetch(
                source, max_bytes=MAX_IMAGE_BYTES, types=LINKEDIN_IMAGE_TYPES
            )
        except MediaError as error:
            return media_failed(error)
        initialize = {"initializeUploadRequest": {"owner": request.page_id}}
        response = await send(
            self.http,
            self.http.build_request(
                "POST",
                f"{self.api}/rest/images",
                params={"action": "initializeUpload"},
                content=json.dumps(initialize).encode(),
                headers=self.headers(request),
            ),
        )
        if isinstance(response, PublishOutcome):
            return nothing_posted(response)
        if not response.is_success:
            return error_outcome(response)
        value = json_object(response).get("value")
        if not isinstance(value, dict) or not value.get("uploadUrl") or not value.get("image"):
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=response.status_code,
                code="initialize_upload",
                message=f"initializeUpload answer without an upload URL: {excerpt(response)}",
            )
        put = await send(
            self.http,
            self.http.build_request(
                "PUT",
                str(value["uploadUrl"]),
                content=media.content,
                headers={
                    "authorization": f"Bearer {request.access_token}",
                    "content-type": media.content_type,
                },
            ),
        )
        if isinstance(put, PublishOutcome):
            return nothing_posted(put)
        if not put.is_success:
            return error_outcome(put)
        return str(value["image"])

    async def upload_video(
        self, request: PublishRequest, video: StoredMedia
    ) -> str | PublishOutcome:
        """Upload the post's video through the Videos API and wait until LinkedIn can show it;
        its `urn:li:video:…`, or why not. Nothing is public until the post is made, so every
        failure here is retryable or permanent, never UNKNOWN."""
        if video.content_type not in VIDEO_TYPES:
            return PublishOutcome(
                Result.PERMANENT,
                code="video_type",
                message=f"LinkedIn takes MP4 videos only, not {video.content_type}",
            )
        if not MIN_VIDEO_BYTES <= video.size <= MAX_VIDEO_BYTES:
            return PublishOutcome(
                Result.PERMANENT,
                code="video_size",
                message=(
                    f"the video is {video.size} bytes; LinkedIn takes {MIN_VIDEO_BYTES} to "
                    f"{MAX_VIDEO_BYTES}"
                ),
            )
        initialize = {
            "initializeUploadRequest": {
                "owner": request.page_id,
                "fileSizeBytes": video.size,
                "uploadCaptions": False,
                "uploadThumbnail": False,
            }
        }
        response = await self.rest(request, "POST", "/rest/videos", initialize, "initializeUpload")
        if isinstance(response, PublishOutcome):
            return response
        value = json_object(response).get("value")
        value = value if isinstance(value, dict) else {}
        urn = value.get("video")
        instructions = value.get("uploadInstructions")
        part_size = _part_size(instructions, video.size)
        if (
            not isinstance(urn, str)
            or not urn
            or not part_size
            or not isinstance(instructions, list)
        ):
            return PublishOutcome(
                Result.RETRYABLE,
                http_status=response.status_code,
                code="initialize_upload",
                message=f"initializeUpload answer without usable upload instructions: "
                f"{excerpt(response)}",
            )
        etags = await self.upload_parts(video, instructions, part_size)
        if isinstance(etags, PublishOutcome):
            return etags
        finalize = {
            "finalizeUploadRequest": {
                "video": urn,
                "uploadToken": str(value.get("uploadToken") or ""),
                "uploadedPartIds": etags,
            }
        }
        finalized = await self.rest(request, "POST", "/rest/videos", finalize, "finalizeUpload")
        if isinstance(finalized, PublishOutcome):
            return finalized
        return await self.processed(request, urn)

    async def upload_parts(
        self, video: StoredMedia, instructions: list[Any], part_size: int
    ) -> list[str] | PublishOutcome:
        """PUT each part, streamed from the media store in the instructions' part size, to its
        pre-signed URL (no token: the URL is the credential); the ETags, in order."""
        etags: list[str] = []
        try:
            async for part in self.context.media.stream(video, part_size):
                target = instructions[len(etags)]
                put = await send_upload(
                    self.http,
                    self.http.build_request(
                        "PUT",
                        str(target["uploadUrl"]),
                        content=part,
                        headers={"content-type": "application/octet-stream"},
                    ),
                )
                if isinstance(put, PublishOutcome):
                    return put
                if not put.is_success:
                    return _part_failed(put)
                # An ETag may come quoted, as HTTP writes it; finalizeUpload wants the bare id.
                etag = put.headers.get("etag", "").strip()
                if len(etag) >= 2 and etag[0] == etag[-1] == '"':
                    etag = etag[1:-1]
                if not etag:
                    return PublishOutcome(
                        Result.RETRYABLE,
                        http_status=put.status_code,
                        code="no_etag",
                        message=f"part {len(etags)} of the video was taken without an ETag",
                    )
                etags.append(etag)
        except MediaError as error:
            return media_failed(error)
        return etags

    async def processed(self, request: PublishRequest, urn: str) -> str | PublishOutcome:
        """`urn` once LinkedIn says AVAILABLE, polling `GET /rest/videos/{urn}` with the call
        slot given back between polls, for at most `video_wait` seconds of pauses."""
        waited = 0.0
        while True:
            response = await self.rest(request, "GET", f"/rest/videos/{quote(urn, safe='')}")
            if isinstance(response, PublishOutcome):
                return response
            status = str(json_object(response).get("status", ""))
            if status == "AVAILABLE":
                return urn
            if status == "PROCESSING_FAILED":
                return PublishOutcome(
                    Result.PERMANENT,
                    http_status=response.status_code,
                    code="PROCESSING_FAILED",
                    message=f"LinkedIn could not process the video {urn}: {excerpt(response)}",
                )
            if waited >= self.video_wait:
                return PublishOutcome(
                    Result.RETRYABLE,
                    http_status=response.status_code,
                    code="video_processing",
                    message=f"the video {urn} is still {status or 'unknown'} after {waited:g} s",
                )
            await request.stage.pause(VIDEO_POLL_SECONDS)
            waited += VIDEO_POLL_SECONDS

    async def rest(
        self,
        request: PublishRequest,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        action: str = "",
    ) -> httpx.Response | PublishOutcome:
        """One `/rest` call made before the post: the answer when it succeeded, else its
        outcome (a lost answer is retryable, since nothing is public yet)."""
        response = await send(
            self.http,
            self.http.build_request(
                method,
                f"{self.api}{path}",
                params={"action": action} if action else None,
                content=json.dumps(body).encode() if body is not None else None,
                headers=self.headers(request),
            ),
        )
        if isinstance(response, PublishOutcome):
            return nothing_posted(response)
        if not response.is_success:
            return error_outcome(response)
        return response

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str | PublishOutcome:
        """Trade the refresh token for a new access token. LinkedIn does not rotate refresh
        tokens (the same one stays valid until its own expiry), so it is kept."""
        if not request.refresh_token:
            return (
                "LinkedIn gives refresh tokens only to approved partners and this account has "
                "none; the member must connect the account again"
            )
        client_id = self.context.app_secret(request, "linkedin", "client_id")
        client_secret = self.context.app_secret(request, "linkedin", "client_secret")
        if not client_id or not client_secret:
            return "no LinkedIn client_id/client_secret to refresh with"
        response = await send(
            self.http,
            self.http.build_request(
                "POST",
                f"{self.oauth}/oauth/v2/accessToken",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": request.refresh_token,
                    "client_id": client_id,
                    "client_secret": client_secret,
                },
            ),
        )
        if isinstance(response, PublishOutcome):
            return response  # not reached: the refresh token is still good for later
        if response.status_code == 429 or response.status_code >= 500:
            return classify_http(response)
        data = json_object(response)
        if not response.is_success:
            reason = data.get("error_description") or data.get("error") or excerpt(response, 200)
            return f"refresh refused with HTTP {response.status_code}: {reason}"
        try:
            access = str(data["access_token"])
            expires_at = datetime.now(UTC) + timedelta(seconds=float(data["expires_in"]))
        except (KeyError, TypeError, ValueError):
            return f"refresh answer without a token: {excerpt(response, 200)}"
        return RefreshedTokens(
            access, str(data.get("refresh_token") or request.refresh_token), expires_at
        )


def _part_size(instructions: object, size: int) -> int:
    """The part size of upload instructions that cut `size` bytes into contiguous parts of one
    size (the last may be shorter), as LinkedIn's do; 0 for any other plan."""
    if not isinstance(instructions, list) or not instructions:
        return 0
    ranges: list[tuple[int, int]] = []
    for item in instructions:
        if not isinstance(item, dict) or not item.get("uploadUrl"):
            return 0
        first, last = item.get("firstByte"), item.get("lastByte")
        if not isinstance(first, int) or not isinstance(last, int):
            return 0
        ranges.append((first, last))
    step = ranges[0][1] - ranges[0][0] + 1
    for index, (first, last) in enumerate(ranges):
        end = min(first + step, size) - 1
        if step <= 0 or first != index * step or last != end:
            return 0
    return step if ranges[-1][1] == size - 1 else 0


def _part_failed(response: httpx.Response) -> PublishOutcome:
    """A part's PUT refused. Its URL is pre-signed, so a 401 or 403 says the URL is no longer
    good (expired), which a new upload mends: retryable, as are 429 and 5xx; another 4xx is
    permanent."""
    outcome = error_outcome(response)
    status = response.status_code
    if status in (401, 403):
        return replace(outcome, result=Result.RETRYABLE)
    return outcome


def create(context: PlatformContext) -> LinkedInClient:
    return LinkedInClient(context)

"""What the Meta Graph APIs (Facebook Pages, Instagram, Threads) share: reading their error
envelope and usage headers, a call helper, and the container flow Instagram and Threads publish
through.

Graph APIs answer mostly HTTP 400 for everything, throttling included, so an answer is read by
its envelope `{"error": {message, type, code, error_subcode, fbtrace_id, is_transient}}`:

- 190 (token expired, revoked, invalid): AUTH.
- 4, 17, 32, 613, 80001 (app, user, Page, custom, business-use-case throttling): RETRYABLE, and
  the account blocked, until the `estimated_time_to_regain_access` (minutes) of
  `X-Business-Use-Case-Usage`, else for `DEFAULT_THROTTLE`.
- 4 / 2207051 (the publishing action is suspected to be spam): PERMANENT, though code 4.
- 9 / 2207042 (publishing quota of a 24-h window used up; in Meta's table): RETRYABLE after
  `QUOTA_WAIT`.
- 9007 / 2207027 (container not ready to publish): RETRYABLE.
- The rows of Meta's Instagram error-code table whose recommended solution is to try again
  (`TRY_AGAIN`, e.g. -2 / 2207003 media download timed out, -1 / 2207001 server error, -1 /
  2207032 create media failed, 24 / 2207008 temporary): RETRYABLE, whatever `is_transient` says
  (the table's own sample answer has it false). A retry builds new containers, which is what
  the rows that say "generate a new container" ask for.
- 9004 / 2207052 (the platform could not download the media), 10, 100, 200-299 (permissions,
  parameters), 368 (blocked or duplicate), 506 (duplicate): PERMANENT with the platform's message.
- 1, 2, `is_transient`, or any other code on a 5xx: RETRYABLE; anything else PERMANENT.

Threads answers in the same Graph envelope and documents no code table of its own (its
troubleshooting page lists only container `error_message` values), so Instagram's table is
read for Threads too; Facebook never sends these subcodes.

`X-App-Usage`, `X-Page-Usage` and `X-Business-Use-Case-Usage` carry percentages of a budget;
one at 100 (or a time to regain access) on any answer, success included, sets `blocked_until`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from kairos_publisher.media import StoredMedia
from kairos_publisher.platforms.base import (
    AttemptStage,
    PublishOutcome,
    PublishRequest,
    RefreshedTokens,
    Result,
    classify_http,
    retry_after,
    send,
)

THROTTLE_CODES = frozenset({4, 17, 32, 613, 80001})


#: Meta's Instagram error-code table (developers.facebook.com/docs/instagram-platform/
#: instagram-graph-api/reference/error-codes, "Error Codes Defined", updated 2026-06-02): every
#: row whose recommended solution is to try again as it is, or with a new container (which a
#: retry builds anyway), by subcode, with the wait the row asks for. Left out: 9 / 2207042 (the
#: daily publishing limit, "try again the following day": its own wait below), 9007 / 2207027
#: (not ready: below), the rows that say to try again only with other media or text (2207004
#: image too large, 2207009 aspect ratio, 2207010 caption too long, 2207028 carousel size) and
#: those that need the account fixed (2207050 restricted, 2207051 spam). 36001 / 2207005 ("The
#: image format ... is not supported") is left out although its row reads "Generate a new
#: container and use it to try again": that text repeats 2207006's, and the image stays the same.
TRY_AGAIN: dict[int, timedelta] = {
    2207003: timedelta(0),  # -2: "It takes too long to download the media." Try again.
    2207020: timedelta(0),  # -2: "The media ... has expired." New container, try again.
    2207001: timedelta(0),  # -1: "Instagram server error. Try again."
    2207032: timedelta(0),  # -1: "Create media fail" Failed to create a container. Try again.
    2207053: timedelta(0),  # -1: "unknown upload error" New container, try again.
    2207006: timedelta(0),  # 24: "The media with {id} cannot be found" New container, try again.
    # 24: "The media builder ... does not exist or has been expired." "Temporary error
    # publishing a container. Try again 1-2 times in the next 30 seconds to 2 minutes."
    2207008: timedelta(seconds=30),
}
#: 4 / 2207051 is code 4 (throttling) but no throttle: "The publishing action is suspected to be
#: spam" (the same table); waiting would not change the answer.
SPAM = 2207051
PERMANENT_CODES = frozenset({10, 100, 368, 506, 9004, *range(200, 300)})
#: How long to stay away after throttling that does not say when access comes back.
DEFAULT_THROTTLE = timedelta(minutes=5)
#: How long to stay away after the 24-h publishing quota ran out; the window moves, so the
#: first slot frees when the oldest counted post ages out, which the answer does not tell.
QUOTA_WAIT = timedelta(hours=1)
USAGE_HEADERS = ("x-app-usage", "x-page-usage", "x-business-use-case-usage")
USAGE_KEYS = ("call_count", "total_cputime", "total_time")


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _usage_entries(response: httpx.Response) -> list[dict[str, Any]]:
    """Every usage object in the headers; the BUC header nests lists of them by business id."""
    entries: list[dict[str, Any]] = []
    for name in USAGE_HEADERS:
        try:
            data = json.loads(response.headers.get(name, ""))
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if name != "x-business-use-case-usage":
            entries.append(data)
            continue
        for items in data.values():
            if isinstance(items, list):
                entries.extend(item for item in items if isinstance(item, dict))
    return entries


def usage_block(response: httpx.Response, now: datetime) -> datetime | None:
    """Until when the usage headers say the budget is gone: the time to regain access if one
    is given, else `DEFAULT_THROTTLE` when any share is at 100 %."""
    entries = _usage_entries(response)
    regain = max((_number(e.get("estimated_time_to_regain_access")) for e in entries), default=0)
    if regain > 0:
        return now + timedelta(minutes=regain)
    if any(_number(e.get(key)) >= 100 for e in entries for key in USAGE_KEYS):
        return now + DEFAULT_THROTTLE
    return None


@dataclass(frozen=True)
class GraphError:
    code: int
    subcode: int
    message: str
    transient: bool


def graph_error(response: httpx.Response) -> GraphError | None:
    """The error envelope of an answer, if it has one."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict):
        return None
    return GraphError(
        code=int(_number(error.get("code"))),
        subcode=int(_number(error.get("error_subcode"))),
        message=str(error.get("message", "")),
        transient=bool(error.get("is_transient", False)),
    )


def classify(response: httpx.Response, now: datetime | None = None) -> PublishOutcome:
    """An unsuccessful Graph answer as an outcome (see the module docstring for the table)."""
    now = now or datetime.now(UTC)
    blocked = usage_block(response, now)
    error = graph_error(response)
    if error is None:
        return replace(classify_http(response), blocked_until=blocked)
    base = PublishOutcome(
        Result.PERMANENT,
        http_status=response.status_code,
        code=f"{error.code}/{error.subcode}" if error.subcode else str(error.code),
        message=error.message[:500],
        blocked_until=blocked,
    )
    if error.code == 190:
        return replace(base, result=Result.AUTH)
    if error.subcode == SPAM:
        return base
    if error.code in THROTTLE_CODES:
        until = blocked or now + DEFAULT_THROTTLE
        return replace(base, result=Result.RETRYABLE, retry_not_before=until, blocked_until=until)
    if error.subcode == 2207042:
        until = max(blocked or now, now + QUOTA_WAIT)
        return replace(base, result=Result.RETRYABLE, retry_not_before=until, blocked_until=until)
    if error.code == 9007 or error.subcode == 2207027:
        return replace(base, result=Result.RETRYABLE)
    if error.subcode in TRY_AGAIN:
        wait = TRY_AGAIN[error.subcode]
        later = now + wait if wait else retry_after(response)
        return replace(base, result=Result.RETRYABLE, retry_not_before=later)
    if error.code in PERMANENT_CODES or error.subcode == 2207052:
        return base
    if error.code in (1, 2) or error.transient or response.status_code >= 500:
        return replace(base, result=Result.RETRYABLE, retry_not_before=retry_after(response))
    return base


def _later(first: datetime | None, second: datetime | None) -> datetime | None:
    return max(first, second) if first and second else first or second


class Graph:
    """The calls of one publish to one Graph host: the token goes along, every answer is
    classified, and the latest usage block seen is kept for the final outcome."""

    def __init__(self, http: httpx.AsyncClient, base: str, token: str) -> None:
        self.http = http
        self.base = base
        self.token = token
        self.blocked_until: datetime | None = None

    async def call(
        self, method: str, path: str, fields: dict[str, str], *, publishes: bool = False
    ) -> dict[str, Any] | PublishOutcome:
        """The JSON object answered, or the outcome of a failure. Only a call that `publishes`
        can leave a post behind, so only its timeout is UNKNOWN; others are retryable."""
        params = {**fields, "access_token": self.token}
        url = f"{self.base}/{path}"
        if method == "GET":
            outgoing = self.http.build_request("GET", url, params=params)
        else:
            outgoing = self.http.build_request(method, url, data=params)
        response = await send(self.http, outgoing)
        if isinstance(response, PublishOutcome):
            if response.result == Result.UNKNOWN and not publishes:
                return replace(response, result=Result.RETRYABLE)
            return response
        now = datetime.now(UTC)
        self.blocked_until = _later(self.blocked_until, usage_block(response, now))
        if not response.is_success:
            return classify(response, now)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return PublishOutcome(
                Result.UNKNOWN if publishes else Result.RETRYABLE,
                http_status=response.status_code,
                code="bad_answer",
                message=f"{path}: success without a JSON object",
            )
        return data

    def finish(self, outcome: PublishOutcome) -> PublishOutcome:
        """The outcome with the latest usage block of the whole publish."""
        return replace(outcome, blocked_until=_later(outcome.blocked_until, self.blocked_until))

    async def field(self, node: str, name: str) -> str:
        """One field of a node (a permalink after publishing), "" when it cannot be had: the
        post exists either way."""
        data = await self.call("GET", node, {"fields": name})
        return str(data.get(name, "")) if isinstance(data, dict) else ""


def created_id(data: dict[str, Any], path: str, *, publishes: bool) -> str | PublishOutcome:
    """The `id` of a created object, or the outcome when a success answer lacks it."""
    value = data.get("id")
    if value:
        return str(value)
    return PublishOutcome(
        Result.UNKNOWN if publishes else Result.RETRYABLE,
        code="bad_answer",
        message=f"{path}: success without an id",
    )


def pulled_video_url(video: StoredMedia, platform: str) -> str | PublishOutcome:
    """The presigned URL the platform downloads the video from, or the outcome when the media
    store made none (only a store that makes URLs, S3, can give one)."""
    if video.url:
        return video.url
    return PublishOutcome(
        Result.PERMANENT,
        code="media",
        message=f"{platform} downloads a video from a URL, and the media store gave none for "
        f"{video.media_id} (presigned URLs need an S3 media store)",
    )


class ContainerClient:
    """Publishing through media containers (Instagram, Threads): create the container(s), poll
    until FINISHED, publish it, read the permalink. A container is single use and never
    public by itself, so only the publish call can leave a post behind.

    A video container is made from the video's presigned URL, which the platform downloads and
    processes on its own time: its status is polled through the attempt's stage (`pause` gives
    the call slot back between reads), every `video_poll_interval` seconds for at most
    `video_max_wait` seconds of waiting in all, and `stage.publishing()` is awaited just before
    the publish call. Still IN_PROGRESS at the bound: RETRYABLE (nothing was published; the
    next attempt builds a new container). ERROR or EXPIRED: PERMANENT with the platform's words.
    """

    create_edge = ""
    publish_edge = ""
    status_fields = ""
    status_key = ""
    refresh_path = "refresh_access_token"
    refresh_grant = ""

    def __init__(self, http: httpx.AsyncClient, base: str, oauth_base: str) -> None:
        self.http = http
        self.base = base
        self.oauth_base = oauth_base
        #: Seconds between status polls, and the longest wait for FINISHED before giving up
        #: (retryably: nothing was published). Image containers take seconds.
        self.poll_interval = 3.0
        self.max_wait = 60.0
        #: The same for a video container, whose waits go through the attempt's stage; the
        #: platform module sets its own (see its docstring).
        self.video_poll_interval = 60.0
        self.video_max_wait = 600.0

    async def publish_containers(
        self,
        graph: Graph,
        user: str,
        children: list[dict[str, str]],
        parent: dict[str, str],
        *,
        stage: AttemptStage | None = None,
    ) -> PublishOutcome:
        """Create the children (carousel items) and the parent, wait, publish the parent. With a
        `stage` (a video post), the waits go through it and it is told just before the publish
        call, which is not made when it answers an outcome."""
        path = f"{user}/{self.create_edge}"
        child_ids: list[str] = []
        for fields in children:
            made = await self.create(graph, path, fields)
            if isinstance(made, PublishOutcome):
                return made
            child_ids.append(made)
        if child_ids:
            parent = {**parent, "children": ",".join(child_ids)}
        container = await self.create(graph, path, parent)
        if isinstance(container, PublishOutcome):
            return container
        waited = await self.wait(graph, container, stage=stage)
        if waited is not None:
            return waited
        if stage is not None:
            refused = await stage.publishing()
            if refused is not None:
                return refused
        publish_path = f"{user}/{self.publish_edge}"
        data = await graph.call("POST", publish_path, {"creation_id": container}, publishes=True)
        if isinstance(data, PublishOutcome):
            if data.result == Result.UNKNOWN:
                return replace(data, message=f"container {container}: {data.message}"[:500])
            return data
        media_id = created_id(data, publish_path, publishes=True)
        if isinstance(media_id, PublishOutcome):
            return media_id
        url = await graph.field(media_id, "permalink")
        return PublishOutcome(Result.PUBLISHED, platform_post_id=media_id, url=url)

    async def create(self, graph: Graph, path: str, fields: dict[str, str]) -> str | PublishOutcome:
        data = await graph.call("POST", path, fields)
        return data if isinstance(data, PublishOutcome) else created_id(data, path, publishes=False)

    async def wait(
        self, graph: Graph, container: str, *, stage: AttemptStage | None = None
    ) -> PublishOutcome | None:
        """None once the container is FINISHED; publishing earlier gets 9007/2207027. Without a
        stage (images, seconds of processing) it sleeps `poll_interval` for up to `max_wait`;
        with one (a video) it pauses `video_poll_interval` through the stage until the pauses
        would pass `video_max_wait`."""
        interval = self.poll_interval if stage is None else self.video_poll_interval
        bound = self.max_wait if stage is None else self.video_max_wait
        deadline = asyncio.get_running_loop().time() + self.max_wait
        paused = 0.0
        while True:
            data = await graph.call("GET", container, {"fields": self.status_fields})
            if isinstance(data, PublishOutcome):
                return data
            status = str(data.get(self.status_key, ""))
            if status == "FINISHED":
                return None
            if status in ("ERROR", "EXPIRED"):
                detail = data.get("error_message") or data.get("status") or status
                return PublishOutcome(
                    Result.PERMANENT,
                    code=f"container_{status.lower()}",
                    message=f"container {container} {status}: {detail}"[:500],
                )
            if stage is None:
                over = asyncio.get_running_loop().time() + interval > deadline
            else:
                over = paused + interval > bound
            if over:
                return PublishOutcome(
                    Result.RETRYABLE,
                    code="container_not_ready",
                    message=f"container {container} still {status} after {bound:g} s",
                )
            if stage is None:
                await asyncio.sleep(interval)
            else:
                paused += interval
                await stage.pause(interval)

    async def refresh(self, request: PublishRequest) -> RefreshedTokens | str | PublishOutcome:
        """Trade the unexpired long-lived token for a new one; Meta has no separate refresh
        token, so the stored one is handed back unchanged."""
        outgoing = self.http.build_request(
            "GET",
            f"{self.oauth_base}/{self.refresh_path}",
            params={"grant_type": self.refresh_grant, "access_token": request.access_token},
        )
        response = await send(self.http, outgoing)
        if isinstance(response, PublishOutcome):
            return response  # not reached: the token may still refresh later
        if not response.is_success:
            refused = classify(response)
            if refused.result in (Result.RETRYABLE, Result.UNKNOWN):
                return refused  # throttled or a server error: not a reason to re-authorise
            error = graph_error(response)
            words = f"{error.code}: {error.message}" if error else response.text[:200]
            return f"refresh refused with HTTP {response.status_code}: {words}"
        try:
            data = response.json()
            expires_at = datetime.now(UTC) + timedelta(seconds=float(data["expires_in"]))
            return RefreshedTokens(str(data["access_token"]), request.refresh_token, expires_at)
        except (ValueError, KeyError, TypeError):
            return "refresh answer without a token"

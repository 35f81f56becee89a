"""Post detail (`/posts/<id>`): a post, each of its targets and every attempt of each, and what
can be done to it now (retry a target, publish now, unschedule, delete, approve or reject).

Each action is a form of its own, shown only when the post's state allows it, so that the page
offers nothing the api would refuse as it stands; the api still decides (the post may have moved
on since the page was drawn), and its refusal is shown beside the action that met it. Deleting
asks for a ticked box first, which works without a script. Another tenant's post, or one that
was deleted, is the api's NOT_FOUND: the 404 page of the api_errors middleware.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from aiohttp import web

from kairos.posts.v1 import media_pb2, posts_pb2
from kairos_client import KairosClient, KairosError
from kairos_console.app import api
from kairos_console.render import render, with_notice
from kairos_console.views.forms import FieldErrors, Form, form_of, text
from kairos_console.views.problems import REFUSALS, Problems

routes = web.RouteTableDef()

#: Target states RetryPost takes.
RETRYABLE = frozenset(
    {
        posts_pb2.TARGET_STATUS_FAILED,
        posts_pb2.TARGET_STATUS_UNKNOWN,
        posts_pb2.TARGET_STATUS_MISSED,
    }
)
#: Post states in which the api still lets a post's schedule and approval change.
EDITABLE = frozenset(
    {
        posts_pb2.POST_STATUS_DRAFT,
        posts_pb2.POST_STATUS_PENDING_APPROVAL,
        posts_pb2.POST_STATUS_SCHEDULED,
        posts_pb2.POST_STATUS_REJECTED,
    }
)


@dataclass(frozen=True)
class Actions:
    """Which of the post's actions apply in its present state."""

    publish_now: bool
    unschedule: bool
    approve: bool
    reject: bool

    @classmethod
    def of(cls, post: posts_pb2.Post) -> Actions:
        approved = post.HasField("approved_at")
        waiting = post.approval_required and not approved and post.status in EDITABLE
        return cls(
            publish_now=post.status
            in (posts_pb2.POST_STATUS_DRAFT, posts_pb2.POST_STATUS_SCHEDULED)
            and (approved or not post.approval_required),
            unschedule=post.status
            in (posts_pb2.POST_STATUS_SCHEDULED, posts_pb2.POST_STATUS_PENDING_APPROVAL),
            approve=waiting,
            reject=waiting and post.status != posts_pb2.POST_STATUS_REJECTED,
        )


@dataclass(frozen=True)
class MediaItem:
    """An attached file: its id, and what the api says of it (None when it is gone)."""

    id: str
    media: media_pb2.Media | None


@routes.get("/posts/{post_id}")
async def post_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.get("/posts/{post_id}/{action:retry|publish-now|unschedule|approve|reject|delete}")
async def action_page(request: web.Request) -> web.Response:
    """An action's address opened, not sent (the zone form returns to the page it was on, and
    a refused action's page is at its address): the post's page."""
    query = f"?{request.query_string}" if request.query_string else ""
    raise web.HTTPSeeOther(f"/posts/{request.match_info['post_id']}{query}")


async def _page(
    request: web.Request,
    problems: Problems | None = None,
    *,
    status: int = 200,
    reason: str = "",
) -> web.Response:
    client = api(request)
    post, accounts = await asyncio.gather(
        client.get_post(request.match_info["post_id"]), client.list_accounts()
    )
    media = await _media_of(client, post.media_ids)
    return render(
        request,
        "post.html",
        status=status,
        post=post,
        accounts={account.id: account for account in accounts},
        media=media,
        links=_links_of(post),
        parts=_thread_parts(request),
        actions=Actions.of(post),
        retryable=RETRYABLE,
        problems=problems or Problems(),
        reason=reason,
    )


async def _media_of(client: KairosClient, ids: Sequence[str]) -> list[MediaItem]:
    async def one(media_id: str) -> MediaItem:
        try:
            return MediaItem(media_id, await client.get_media(media_id))
        except KairosError as error:
            if error.code not in REFUSALS and error.code != grpc.StatusCode.NOT_FOUND:
                raise
            return MediaItem(media_id, None)

    return list(await asyncio.gather(*(one(media_id) for media_id in ids)))


def _links_of(post: posts_pb2.Post) -> dict[str, str]:
    """Each published target's platform URL, by target id, when it is a web address: the URL
    is what a platform (or a customer's webhook) answered, and a `javascript:` one must not
    become a link."""
    return {
        target.id: target.platform_url
        for target in post.targets
        if target.platform_url.lower().startswith(("https://", "http://"))
    }


def _thread_parts(request: web.Request) -> list[str]:
    """The later parts of a thread just composed (the Composer names them in `part=`): links for
    the user to follow; only well-formed ids are kept, as the address may have been edited."""
    found = []
    for value in request.query.getall("part", []):
        try:
            found.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    return found


Act = Callable[[KairosClient, str, Form], Awaitable[object]]


async def _act(
    request: web.Request, act: Act, *, control: str, notice: str, done_path: str = ""
) -> web.StreamResponse:
    """Do one action; back to the post with `notice`, or the page again with the api's refusal
    beside the action's form (`control`), a field violation beside its field."""
    post_id = request.match_info["post_id"]
    form = await form_of(request)
    try:
        await act(api(request), post_id, form)
    except KairosError as error:
        if error.code not in REFUSALS:
            raise
        problems = Problems()
        for path, messages in FieldErrors.of(error).items():
            for message in messages:
                problems.add(FIELD_CONTROLS.get(path, control), message)
        return await _page(
            request, problems, status=REFUSALS[error.code], reason=text(form, "reason")
        )
    raise web.HTTPSeeOther(with_notice(done_path or f"/posts/{post_id}", notice))


#: The api's field paths that have a field of their own on this page.
FIELD_CONTROLS = {"reason": "reject-reason"}


@routes.post("/posts/{post_id}/retry")
async def retry(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    target_id = text(form, "target_id")

    async def act(client: KairosClient, post_id: str, form: Form) -> object:
        return await client.retry_post(post_id, [target_id])

    return await _act(request, act, control=f"retry-{target_id}", notice="retried")


@routes.post("/posts/{post_id}/publish-now")
async def publish_now(request: web.Request) -> web.StreamResponse:
    async def act(client: KairosClient, post_id: str, form: Form) -> object:
        return await client.publish_now(post_id)

    return await _act(request, act, control="publish-now", notice="published-now")


@routes.post("/posts/{post_id}/unschedule")
async def unschedule(request: web.Request) -> web.StreamResponse:
    async def act(client: KairosClient, post_id: str, form: Form) -> object:
        return await client.unschedule_post(post_id)

    return await _act(request, act, control="unschedule", notice="unscheduled")


@routes.post("/posts/{post_id}/approve")
async def approve(request: web.Request) -> web.StreamResponse:
    async def act(client: KairosClient, post_id: str, form: Form) -> object:
        return await client.approve_post(post_id)

    return await _act(request, act, control="approve", notice="approved")


@routes.post("/posts/{post_id}/reject")
async def reject(request: web.Request) -> web.StreamResponse:
    async def act(client: KairosClient, post_id: str, form: Form) -> object:
        return await client.reject_post(post_id, text(form, "reason"))

    return await _act(request, act, control="reject", notice="rejected")


@routes.post("/posts/{post_id}/delete")
async def delete(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    if text(form, "confirm") != "yes":
        problems = Problems()
        problems.add("delete-confirm", "Tick the box to confirm that this post is to be deleted.")
        return await _page(request, problems, status=400)

    async def act(client: KairosClient, post_id: str, form: Form) -> object:
        return await client.delete_post(post_id)

    # A deleted post has no page any more: the notice is shown on the dashboard.
    return await _act(request, act, control="delete", notice="deleted", done_path="/")

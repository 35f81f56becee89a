"""The Composer (`/compose`): one form that writes a post, or a thread of posts, to the tenant's
active accounts.

The form carries a `request_id` drawn when it is first shown, and every CreatePost it makes is
sent with it (the thread's later parts with ids derived from it), so a form sent twice, by a
double click or a reload, makes its posts once: the api answers a repeated request_id with the
post it made first. Files are uploaded before the post is created; a file whose bytes are among
the tenant's newest uploads is not uploaded again but named by the id it got then, so that a
repeat of the form names the same media and so repeats its request exactly (the api refuses a
request_id reused for a different request). Two sends of one form are handled one after the
other in this process for the same reason: the second then finds the first one's upload.

A thread is checked whole (BatchCreatePosts with validate_only) before its first part is
created, so that a refusal of part 3 does not leave parts 1 and 2 behind. What can still fail
later (an account paused meanwhile) is reported part by part: which were created, which not.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import tempfile
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

from aiohttp import web

from kairos.posts.v1 import media_pb2, posts_pb2
from kairos_client import KairosClient, KairosError, schedule_after, schedule_local
from kairos_console.app import api, session_of
from kairos_console.render import render, with_notice
from kairos_console.session import zone_names
from kairos_console.views.forms import FieldErrors, Form, form_of, text, texts
from kairos_console.views.problems import REFUSALS, Problems

routes = web.RouteTableDef()

#: When the post publishes: saved as a draft, at a wall time in a zone, or at once.
WHEN = ("draft", "at", "now")

#: What a form sent again with other content is told, beside the api's refusal of its id.
RESENT = (
    "This form was sent before with other content, so nothing was saved now. It has a new "
    "request id: save again to make a new post."
)

#: How many of the tenant's newest media are looked through for a file uploaded again.
RECENT_MEDIA = 50

#: Form fields the api's field paths fall on (the first part of a path, below `targets[N]`).
CONTROLS = {
    "content": "content",
    "targets": "targets",
    "media_ids": "media",
    "media_urls": "media",
    "campaign": "campaign",
    "tags": "tags",
    "approval_required": "approval",
}

_ITEM = re.compile(r"items\[(\d+)\]\.?(.*)")
_TARGET = re.compile(r"targets\[(\d+)\](?:\.(.*))?")

#: The most accounts one check counts (the api takes at most this many targets per post).
MAX_COUNTED = 50

#: One lock per form being sent (by its request_id), while it is handled.
_SENDING: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class KeptMedia:
    """A file uploaded by an earlier send of the form, kept for the next one."""

    id: str
    name: str


@dataclass
class Compose:
    """What the form holds: what the user typed, read back to show it again after a refusal."""

    request_id: str
    time_zone: str
    content: str = ""
    #: The chosen accounts' ids, in the form's order (the api's `targets[N]`).
    targets: list[str] = field(default_factory=list)
    #: Text per account that replaces the content there; kept for unchosen accounts too.
    overrides: dict[str, str] = field(default_factory=dict)
    media: list[KeptMedia] = field(default_factory=list)
    when: str = "draft"
    date_time: str = ""
    #: The thread's parts after the first (part 2 first).
    parts: list[str] = field(default_factory=list)
    approval_required: bool = False
    campaign: str = ""
    tags: str = ""

    @classmethod
    def blank(cls, zone: str) -> Compose:
        return cls(request_id=str(uuid.uuid4()), time_zone=zone)

    @classmethod
    def read(cls, form: Form, zone: str) -> Compose:
        overrides = {
            name.removeprefix("override."): value
            for name in form
            if name.startswith("override.") and (value := text(form, name))
        }
        media_ids = list(dict.fromkeys(texts(form, "media_id")))
        return cls(
            # A form without one (sent by hand) still gets one id for all its parts.
            request_id=text(form, "request_id") or str(uuid.uuid4()),
            time_zone=text(form, "time_zone") if "time_zone" in form else zone,
            content=text(form, "content"),
            targets=list(dict.fromkeys(texts(form, "target"))),
            overrides=overrides,
            media=[KeptMedia(i, text(form, f"media_name.{i}") or i) for i in media_ids],
            when=text(form, "when") or "draft",
            date_time=text(form, "date_time"),
            parts=texts(form, "part"),
            approval_required=bool(text(form, "approval_required")),
            campaign=text(form, "campaign"),
            tags=text(form, "tags"),
        )

    def tag_list(self) -> list[str]:
        return [tag.strip() for tag in self.tags.split(",") if tag.strip()]

    def schedule(self) -> posts_pb2.Schedule | None:
        if self.when == "at":
            # The wall time as typed, in the zone chosen: the api resolves it, and refuses a
            # time the clocks skip in its own words.
            return schedule_local(self.date_time, self.time_zone)
        if self.when == "now":
            # A delay of zero rather than an instant: a repeat of the form is then the same
            # request however much later it comes.
            return schedule_after(timedelta(0))
        return None

    def part_request_id(self, number: int) -> str:
        """The request_id of part `number` (1 is the post itself)."""
        if number == 1:
            return self.request_id
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kairos-console:{self.request_id}:{number}"))

    def target_specs(self, accounts: list[str]) -> list[posts_pb2.TargetSpec]:
        """A target per account, with the account's own text where it has one."""
        return [
            posts_pb2.TargetSpec(account_id=account, content_override=self.overrides[account])
            if account in self.overrides
            else posts_pb2.TargetSpec(account_id=account)
            for account in accounts
        ]

    def requests(self) -> list[posts_pb2.CreatePostRequest]:
        """One CreatePost per part, in order, without their parent ids (known once created)."""
        schedule = self.schedule()
        first = posts_pb2.CreatePostRequest(
            content=self.content,
            targets=self.target_specs(self.targets),
            media_ids=[m.id for m in self.media],
            campaign=self.campaign,
            tags=self.tag_list(),
            schedule=schedule,
            approval_required=self.approval_required,
            request_id=self.part_request_id(1),
        )
        parts = [
            posts_pb2.CreatePostRequest(
                content=content,
                targets=[posts_pb2.TargetSpec(account_id=account) for account in self.targets],
                campaign=self.campaign,
                tags=self.tag_list(),
                schedule=schedule,
                approval_required=self.approval_required,
                request_id=self.part_request_id(number),
            )
            for number, content in enumerate(self.parts, start=2)
        ]
        return [first, *parts]


def control_of(path: str, form: Compose, part: int = 1) -> str:
    """The form control an api field path (of part `part`) falls on; "" for none."""
    item = _ITEM.fullmatch(path)
    if item:
        part, path = int(item[1]) + 1, item[2]
    if part > 1 and path in ("content", "request_id"):
        # A later part has a text (and a request_id) of its own; the rest it shares with part 1.
        return f"part-{part}"
    target = _TARGET.fullmatch(path)
    if target:
        index = int(target[1])
        if index >= len(form.targets):
            return "targets"
        account = form.targets[index]
        return f"override-{account}" if target[2] == "content_override" else f"target-{account}"
    if path.startswith("schedule"):
        if path.startswith("schedule.local.time_zone"):
            return "time-zone"
        return "date-time" if form.when == "at" else "when"
    return CONTROLS.get(re.split(r"[.\[]", path, maxsplit=1)[0], "")


def problems_of(error: KairosError, form: Compose, part: int = 1) -> Problems:
    problems = Problems()
    for path, messages in FieldErrors.of(error).items():
        control = control_of(path, form, part) if path else ""
        for message in messages:
            problems.add(control, message)
    return problems


@dataclass(frozen=True)
class ThreadReport:
    """A thread that stopped part-way: the parts created, the one refused, the ones not tried."""

    created: list[posts_pb2.Post]
    refused: int
    untried: list[int]


@routes.get("/compose")
async def compose_page(request: web.Request) -> web.Response:
    return await _form_page(request, Compose.blank(session_of(request).zone))


@routes.post("/compose/check")
async def check(request: web.Request) -> web.Response:
    """The text's length on each account as the api counts it (ValidatePost), for the form's
    counters: every account the page shows a counter for (`count_for`), ticked or not, so the
    counts are there before a choice is made. JSON: {"targets": [{"account_id", "length",
    "max_length", "unit"}]}."""
    form = await form_of(request)
    draft = Compose.read(form, session_of(request).zone)
    counted = list(dict.fromkeys([*draft.targets, *texts(form, "count_for")]))[:MAX_COUNTED]
    post = posts_pb2.CreatePostRequest(
        content=draft.content,
        targets=draft.target_specs(counted),
        media_ids=[m.id for m in draft.media],
    )
    checked = await api(request).validate_post(post)
    return web.json_response(
        {
            "targets": [
                {
                    "account_id": target.account_id,
                    "length": target.length,
                    "max_length": target.max_length,
                    "unit": target.unit,
                }
                for target in checked.targets
                if target.max_length  # an account the api did not find counts nothing
            ]
        }
    )


@routes.post("/compose")
async def compose(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    draft = Compose.read(form, session_of(request).zone)
    client = api(request)
    async with _SENDING.setdefault(draft.request_id, asyncio.Lock()):
        problems = Problems()
        draft.media.extend(await _upload(client, form, problems))
        if text(form, "action") == "add-part":
            draft.parts.append("")
            return await _form_page(request, draft, problems, status=400 if problems else 200)
        if draft.when not in WHEN:
            problems.add("when", "Choose a draft, a date and time, or now.")
        if problems:
            return await _form_page(request, draft, problems, status=400)
        requests = draft.requests()
        if len(requests) > 1:
            refused = await _check_thread(client, requests, draft)
            if refused:
                return await _form_page(request, draft, refused, status=400)
        created: list[posts_pb2.Post] = []
        for number, create in enumerate(requests, start=1):
            if created:
                create.parent_post_id = created[-1].id
            try:
                created.append(await client.create_post(create))
            except KairosError as error:
                if error.code not in REFUSALS:
                    raise
                problems = problems_of(error, draft, number)
                report = (
                    ThreadReport(created, number, list(range(number + 1, len(requests) + 1)))
                    if created
                    else None
                )
                if report is None and any(path == "request_id" for path, _ in error.violations):
                    # The form was sent before with other content (the page kept by the
                    # browser's Back button, then edited): as a new request it needs a new id.
                    draft.request_id = str(uuid.uuid4())
                    problems.add("", RESENT)
                return await _form_page(
                    request, draft, problems, status=REFUSALS[error.code], thread=report
                )
    first = created[0]
    path = f"/posts/{first.id}"
    if len(created) > 1:
        path += "?" + "&".join(f"part={post.id}" for post in created[1:])
    raise web.HTTPSeeOther(with_notice(path, _notice_of(first, draft)))


def _notice_of(post: posts_pb2.Post, form: Compose) -> str:
    if post.status == posts_pb2.POST_STATUS_SCHEDULED:
        return "published-now" if form.when == "now" else "scheduled"
    return "created"


async def _check_thread(
    client: KairosClient, requests: list[posts_pb2.CreatePostRequest], form: Compose
) -> Problems:
    """Every part checked by the api, none written: what it would refuse, by control."""
    unsent = []
    for create in requests:
        copy = posts_pb2.CreatePostRequest()
        copy.CopyFrom(create)
        # Without request ids: a repeat of a created part would otherwise be compared with a
        # part that names no parent, and refused as a different request.
        copy.ClearField("request_id")
        unsent.append(copy)
    results = await client.batch_create_posts(unsent, validate_only=True)
    problems = Problems()
    first_paths: set[str] = set()
    for index, result in enumerate(results):
        for violation in result.violations:
            path = violation.field.split(".", 1)[1] if "." in violation.field else ""
            if index == 0:
                first_paths.add(path)
            elif path != "content" and path in first_paths:
                # What the parts share (targets, schedule, tags) is refused once, on part 1.
                continue
            problems.add(control_of(violation.field, form), violation.description)
    return problems


async def _upload(client: KairosClient, form: Form, problems: Problems) -> list[KeptMedia]:
    """The files sent with the form, uploaded (or found uploaded already); each refusal is added
    to `problems` on the media field with the file's name."""
    files = [f for f in form.getall("media", []) if isinstance(f, web.FileField) and f.filename]
    if not files:
        return []
    recent: dict[tuple[str, int], str] | None = None
    kept: list[KeptMedia] = []
    with tempfile.TemporaryDirectory(prefix="kairos-console-") as folder:
        for index, upload in enumerate(files):
            name = Path(upload.filename).name or "upload"
            path = Path(folder) / str(index)
            digest, size = await asyncio.to_thread(_copy, upload.file, path)
            if recent is None:
                newest = await client.list_media(media_pb2.ListMediaRequest(page_size=RECENT_MEDIA))
                recent = {(m.sha256, m.size): m.id for m in newest.media}
            if (digest, size) in recent:
                kept.append(KeptMedia(recent[(digest, size)], name))
                continue
            try:
                media = await client.upload_media(path, file_name=name)
            except KairosError as error:
                if error.code not in REFUSALS:
                    raise
                for message in [d for _, d in error.violations] or [error.message]:
                    problems.add("media", f"{name}: {message}")
                continue
            recent[(digest, size)] = media.id
            kept.append(KeptMedia(media.id, name))
    return kept


def _copy(source: IO[bytes], path: Path) -> tuple[str, int]:
    """Copy an uploaded file to `path` (the client uploads from a path); its SHA-256 and size."""
    source.seek(0)
    digest = hashlib.sha256()
    size = 0
    with path.open("wb") as target:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            target.write(chunk)
    return digest.hexdigest(), size


async def _form_page(
    request: web.Request,
    form: Compose,
    problems: Problems | None = None,
    *,
    status: int = 200,
    thread: ThreadReport | None = None,
) -> web.Response:
    accounts = await api(request).list_accounts(status=posts_pb2.ACCOUNT_STATUS_ACTIVE)
    return render(
        request,
        "compose.html",
        status=status,
        form=form,
        accounts=accounts,
        problems=problems or Problems(),
        thread=thread,
        zones=zone_names(),
    )

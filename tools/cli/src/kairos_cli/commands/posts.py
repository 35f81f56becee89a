"""`kairos posts`: create, schedule, edit, inspect, list, publish, retry, approve and delete;
`posts import` (many posts from a CSV file) lives in `imports`."""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer
from google.protobuf.duration_pb2 import Duration

from kairos.posts.v1 import posts_pb2
from kairos_cli import names, render
from kairos_cli.commands import series
from kairos_cli.commands.accounts import split_pairs
from kairos_cli.commands.imports import import_posts
from kairos_cli.runtime import (
    EXIT_USAGE,
    Options,
    call_api,
    console,
    fail,
    hint,
    message_dict,
    options,
    print_json,
    say,
)
from kairos_cli.when import FORMATS, When, WhenError, parse_instant, parse_when, show
from kairos_client import KairosClient, KairosError, schedule_queue
from kairos_common.platforms import Platform

app = typer.Typer(help="Create, schedule, edit, inspect, list and publish posts.")
app.command("import")(import_posts)

PostId = Annotated[str, typer.Argument(metavar="ID", help="The post id.")]
WHEN_HELP = (
    '"2026-11-25T14:00:00Z", a local "2026-11-25 14:00" (in --tz), "in 10s", "in 5m", "in 2h", '
    '"+30s" or "now".'
)
At = Annotated[str, typer.Option("--at", metavar="WHEN", help=WHEN_HELP)]
Zone = Annotated[
    str,
    typer.Option(
        "--tz",
        metavar="ZONE",
        show_default=False,
        help="IANA zone a local WHEN is in (default: the global --tz).",
    ),
]
Repeated = list[str] | None
#: How many posts `posts list` shows unless --limit says otherwise.
LIST_LIMIT = 50


def read_when(text: str, zone: str, opts: Options) -> When:
    """WHEN from the command line, or exit 2 saying which formats are accepted."""
    try:
        return parse_when(text, zone or opts.zone_name)
    except WhenError as error:
        message = str(error)
        fail(EXIT_USAGE, message if "use " in message else f"--at: {message}; use {FORMATS}")


def summary(post: posts_pb2.Post, opts: Options) -> str:
    """One line saying where a post stands: "post ID is scheduled for ... (revision 2)"."""
    status = names.post_status_label(post.status)
    line = f"post {post.id} is {status}"
    if post.HasField("scheduled_at") and status in ("scheduled", "pending_approval", "publishing"):
        line += f" for {show(post.scheduled_at, opts.zone)}"
    return f"{line} (revision {post.revision})"


def _report(
    ctx: typer.Context, action: Callable[[KairosClient], Awaitable[posts_pb2.Post]]
) -> None:
    opts = options(ctx)
    post = call_api(ctx, action)
    if opts.json:
        print_json(post)
    else:
        say(summary(post, opts))


@app.command("create")
def create(
    ctx: typer.Context,
    content: Annotated[str, typer.Argument(metavar="CONTENT", help="The text to publish.")],
    account: Annotated[
        list[str],
        typer.Option("--account", metavar="ID", help="An account to publish to (repeatable)."),
    ],
    at: At = "",
    tz: Zone = "",
    media: Annotated[
        Repeated, typer.Option("--media", metavar="URL", help="Media (https).")
    ] = None,
    media_id: Annotated[
        Repeated,
        typer.Option(
            "--media-id",
            metavar="ID",
            help="An uploaded image or GIF (`kairos media upload`), before any --media.",
        ),
    ] = None,
    tag: Annotated[
        Repeated, typer.Option("--tag", metavar="TAG", help="A tag (repeatable).")
    ] = None,
    campaign: Annotated[
        str, typer.Option("--campaign", metavar="NAME", help="Campaign name.")
    ] = "",
    notes: Annotated[str, typer.Option("--notes", metavar="TEXT", help="Internal notes.")] = "",
    approval: Annotated[
        bool, typer.Option("--approval", help="Require `posts approve` before publishing.")
    ] = False,
    stale_after: Annotated[
        int | None,
        typer.Option("--stale-after", metavar="SECONDS", min=1, help="How late it may go out."),
    ] = None,
    request_id: Annotated[
        str,
        typer.Option(
            "--request-id",
            metavar="ID",
            help="Makes a repeated create return the first post (repeat it unchanged).",
        ),
    ] = "",
    override: Annotated[
        Repeated,
        typer.Option(
            "--override", metavar="ACCOUNT_ID=TEXT", help="Other content for one account."
        ),
    ] = None,
    reply_to: Annotated[
        str,
        typer.Option(
            "--reply-to",
            metavar="POST_ID",
            help="Publish as a reply to this post, the next part of its thread.",
        ),
    ] = "",
    queue: Annotated[
        bool,
        typer.Option("--queue", help="Add to the queue: the next slot free on every --account."),
    ] = False,
    per_target: Annotated[
        bool,
        typer.Option("--per-target", help="With --queue: each account's own next free slot."),
    ] = False,
    repeat: Annotated[
        str,
        typer.Option(
            "--repeat",
            metavar="RULE",
            help="Repeat from --at by this rule: a series (`kairos series`). " + series.RULE_HELP,
        ),
    ] = "",
) -> None:
    """Create a post (a draft without --at or --queue) and print its id; with --repeat, a
    series."""
    opts = options(ctx)
    if queue and at:
        fail(EXIT_USAGE, "--queue and --at exclude each other")
    if queue and repeat:
        fail(EXIT_USAGE, "--queue and --repeat exclude each other")
    when = read_when(at, tz, opts) if at else None
    overrides = split_pairs(override or [], "--override")
    for account_id in overrides:
        if account_id not in account:
            fail(EXIT_USAGE, f"--override names account {account_id}, which no --account gives")
    request = posts_pb2.CreatePostRequest(
        content=content,
        targets=[
            posts_pb2.TargetSpec(account_id=a, content_override=overrides.get(a)) for a in account
        ],
        media_urls=media or [],
        media_ids=media_id or [],
        tags=tag or [],
        campaign=campaign,
        notes=notes,
        approval_required=approval,
        request_id=request_id,
        parent_post_id=reply_to,
    )
    if when is not None and not when.now:
        request.schedule.CopyFrom(when.schedule())
    if per_target and not queue:
        fail(EXIT_USAGE, "--per-target goes with --queue")
    if queue:
        request.schedule.CopyFrom(schedule_queue(per_target=per_target))
    if stale_after is not None:
        request.stale_after.CopyFrom(Duration(seconds=stale_after))
    if repeat:
        if reply_to or request_id:
            fail(EXIT_USAGE, "--repeat makes a series: it takes no --reply-to or --request-id")
        series.create_series(ctx, request, repeat, when, tz or opts.zone_name)
        return

    async def run(client: KairosClient) -> posts_pb2.Post:
        post = await client.create_post(request)
        if when is None or not when.now:
            return post
        try:
            return await client.publish_now(post.id)
        except KairosError:
            hint(f"created post {post.id} as a draft, but could not publish it now:")
            raise

    post = call_api(ctx, run)
    if opts.json:
        print_json(post)
    else:
        say(post.id)
        hint(summary(post, opts))


@app.command("thread")
def thread(
    ctx: typer.Context,
    parts: Annotated[
        list[str], typer.Argument(metavar="PART...", help="The parts, first to last (2 or more).")
    ],
    account: Annotated[
        list[str],
        typer.Option("--account", metavar="ID", help="An account to publish to (repeatable)."),
    ],
    at: At = "",
    tz: Zone = "",
) -> None:
    """Create a thread: each part replies to the one before. Prints the ids, first to last.

    The parts are created as drafts, then scheduled last part first, so nothing goes out unless
    every part was accepted; a part the api refuses leaves no other part behind. Without --at
    the thread stays a set of drafts.
    """
    opts = options(ctx)
    if len(parts) < 2:
        fail(EXIT_USAGE, "a thread needs at least two parts; use `posts create` for one")
    when = read_when(at, tz, opts) if at else None

    async def run(client: KairosClient) -> list[posts_pb2.Post]:
        created: list[posts_pb2.Post] = []
        try:
            for content in parts:
                created.append(
                    await client.create_post(
                        posts_pb2.CreatePostRequest(
                            content=content,
                            targets=[posts_pb2.TargetSpec(account_id=a) for a in account],
                            parent_post_id=created[-1].id if created else "",
                        )
                    )
                )
        except KairosError:
            for post in reversed(created):
                await client.delete_post(post.id)
            hint(f"part {len(created) + 1} was refused; the thread was not created:")
            raise
        if when is None:
            return created
        # The last part first: the first part, which starts the thread, only once all wait.
        # One instant for every part ("in 2h" resolved here once, not by the api at each call).
        schedule = when.fixed().schedule() if not when.now else None
        for index in reversed(range(len(created))):
            post = created[index]
            if schedule is not None:
                created[index] = await client.schedule_post(post.id, schedule)
            else:
                created[index] = await client.publish_now(post.id)
        return created

    posts = call_api(ctx, run)
    if opts.json:
        print_json(posts_pb2.ListPostsResponse(posts=posts))
    else:
        for post in posts:
            say(post.id)
        hint(summary(posts[0], opts))


@app.command("schedule")
def schedule(
    ctx: typer.Context,
    post_id: PostId,
    at: Annotated[str, typer.Option("--at", metavar="WHEN", help=WHEN_HELP)],
    tz: Zone = "",
    expected_revision: Annotated[
        int | None,
        typer.Option("--expected-revision", metavar="N", help="Fail unless still at revision N."),
    ] = None,
) -> None:
    """Schedule a post, or move it to another time ("now" publishes it at once)."""
    when = read_when(at, tz, options(ctx))
    if when.now:
        _report(ctx, lambda client: client.publish_now(post_id))
    else:
        _report(ctx, lambda c: c.schedule_post(post_id, when.schedule(), expected_revision))


@app.command("queue")
def queue_post(
    ctx: typer.Context,
    post_id: PostId,
    not_before: Annotated[
        str,
        typer.Option(
            "--not-before", metavar="WHEN", help="Take no slot before this (default: now)."
        ),
    ] = "",
    per_target: Annotated[
        bool, typer.Option("--per-target", help="Each account's own next free slot.")
    ] = False,
) -> None:
    """Add a post to the queue: the next slot free on every account it targets
    (`kairos queue slots set`), or with --per-target each account's own."""
    opts = options(ctx)
    start = None
    if not_before:
        try:
            start = parse_instant(not_before, opts.zone_name)
        except WhenError as error:
            fail(EXIT_USAGE, f"--not-before: {error}")
    schedule = schedule_queue(start, per_target=per_target)
    _report(ctx, lambda client: client.schedule_post(post_id, schedule))


@app.command("unschedule")
def unschedule(ctx: typer.Context, post_id: PostId) -> None:
    """Take a scheduled post back to draft."""
    _report(ctx, lambda client: client.unschedule_post(post_id))


@app.command("publish-now")
def publish_now(ctx: typer.Context, post_id: PostId) -> None:
    """Publish a post immediately."""
    _report(ctx, lambda client: client.publish_now(post_id))


@app.command("retry")
def retry(
    ctx: typer.Context,
    post_id: PostId,
    target: Annotated[
        Repeated, typer.Option("--target", metavar="ID", help="Only this target (repeatable).")
    ] = None,
) -> None:
    """Try failed, unknown or missed targets again (published ones are never re-sent)."""
    _report(ctx, lambda client: client.retry_post(post_id, target or []))


@app.command("approve")
def approve(ctx: typer.Context, post_id: PostId) -> None:
    """Approve a post that requires approval."""
    _report(ctx, lambda client: client.approve_post(post_id))


@app.command("reject")
def reject(
    ctx: typer.Context,
    post_id: PostId,
    reason: Annotated[
        str, typer.Option("--reason", metavar="TEXT", help="Why; shown to the author.")
    ],
) -> None:
    """Reject a post that requires approval."""
    _report(ctx, lambda client: client.reject_post(post_id, reason))


@app.command("delete")
def delete(ctx: typer.Context, post_id: PostId) -> None:
    """Delete a post from Kairos and cancel what is not yet published.

    What was already published stays on its platforms (Kairos cannot take it back): the command
    names those platform posts and still succeeds, since the post was deleted."""
    opts = options(ctx)
    post = call_api(ctx, lambda client: client.delete_post(post_id))
    published = [t for t in post.targets if t.status == posts_pb2.TARGET_STATUS_PUBLISHED]
    if opts.json:
        print_json(post)
    else:
        say(summary(post, opts))
    if published:
        where = ", ".join(
            f"{names.platform_label(t.platform)} {t.platform_url or t.platform_post_id or t.id}"
            for t in published
        )
        hint(
            f"post {post.id} was deleted from Kairos, but what was already published stays on "
            f"its platforms (Kairos cannot take it back): {where}"
        )


@app.command("edit")
def edit(
    ctx: typer.Context,
    post_id: PostId,
    content: Annotated[
        str | None, typer.Option("--content", metavar="TEXT", help="New text.")
    ] = None,
    tag: Annotated[
        Repeated, typer.Option("--tag", metavar="TAG", help="New tags, replacing all (repeatable).")
    ] = None,
    notes: Annotated[str | None, typer.Option("--notes", metavar="TEXT", help="New notes.")] = None,
    campaign: Annotated[
        str | None, typer.Option("--campaign", metavar="NAME", help="New campaign.")
    ] = None,
    media: Annotated[
        Repeated, typer.Option("--media", metavar="URL", help="New media, replacing all.")
    ] = None,
    media_id: Annotated[
        Repeated,
        typer.Option(
            "--media-id", metavar="ID", help="New uploaded images and GIFs, replacing all."
        ),
    ] = None,
    add_account: Annotated[
        Repeated,
        typer.Option(
            "--add-account", metavar="ID", help="Also publish to this account (repeatable)."
        ),
    ] = None,
    remove_account: Annotated[
        Repeated,
        typer.Option(
            "--remove-account",
            metavar="ID",
            help="No longer publish to this account (repeatable; not once published there).",
        ),
    ] = None,
    expected_revision: Annotated[
        int | None,
        typer.Option("--expected-revision", metavar="N", help="Fail unless still at revision N."),
    ] = None,
) -> None:
    """Change a post's content, tags, notes, campaign, media or accounts.

    --add-account and --remove-account read the post's targets first and send the whole new
    list, expecting the revision they read (or --expected-revision), so that an edit made by
    someone else in between is refused (exit 5) rather than undone."""
    body = posts_pb2.Post()
    paths: list[str] = []
    if content is not None:
        body.content = content
        paths.append("content")
    if tag is not None:
        body.tags.extend(tag)
        paths.append("tags")
    if notes is not None:
        body.notes = notes
        paths.append("notes")
    if campaign is not None:
        body.campaign = campaign
        paths.append("campaign")
    if media is not None:
        body.media_urls.extend(media)
        paths.append("media_urls")
    if media_id is not None:
        body.media_ids.extend(media_id)
        paths.append("media_ids")
    adding, removing = list(dict.fromkeys(add_account or [])), set(remove_account or [])
    if both := [a for a in adding if a in removing]:
        fail(EXIT_USAGE, f"account {both[0]} is both added and removed")
    if not paths and not adding and not removing:
        fail(
            EXIT_USAGE,
            "nothing to change: give --content, --tag, --notes, --campaign, --media, "
            "--media-id, --add-account or --remove-account",
        )

    async def run(client: KairosClient) -> posts_pb2.Post:
        if not adding and not removing:
            return await client.update_post(
                post_id, body, paths, expected_revision=expected_revision
            )
        post = await client.get_post(post_id)
        targets = _targets_after(post, adding, removing)
        revision = post.revision if expected_revision is None else expected_revision
        return await client.update_post(
            post_id, body, [*paths, "targets"], targets=targets, expected_revision=revision
        )

    _report(ctx, run)


def _targets_after(
    post: posts_pb2.Post, adding: list[str], removing: set[str]
) -> list[posts_pb2.TargetSpec]:
    """The post's targets as TargetSpecs (overrides and settings kept), less the removed
    accounts, plus the added ones; exit 2 for an account that is not, or already, a target."""
    current = [target.account_id for target in post.targets]
    for account_id in sorted(removing):
        if account_id not in current:
            fail(
                EXIT_USAGE,
                f"--remove-account: post {post.id} has no target on account {account_id}",
            )
    for account_id in adding:
        if account_id in current:
            fail(EXIT_USAGE, f"--add-account: post {post.id} already has account {account_id}")
    kept = [
        posts_pb2.TargetSpec(
            account_id=target.account_id,
            content_override=(
                target.content_override if target.HasField("content_override") else None
            ),
            settings=dict(target.settings),
        )
        for target in post.targets
        if target.account_id not in removing
    ]
    return [*kept, *(posts_pb2.TargetSpec(account_id=a) for a in adding)]


@app.command("show")
def show_post(ctx: typer.Context, post_id: PostId) -> None:
    """Show a post, its targets and every attempt (times, HTTP status, error class, message)."""
    opts = options(ctx)
    post = call_api(ctx, lambda client: client.get_post(post_id))
    if opts.json:
        print_json(post)
    else:
        console().print(render.post_detail(post, opts.zone))


@app.command("list")
def list_posts(
    ctx: typer.Context,
    status: Annotated[
        list[names.PostStatusName] | None,
        typer.Option("--status", case_sensitive=False, help="Only these statuses (repeatable)."),
    ] = None,
    platform: Annotated[
        list[Platform] | None,
        typer.Option("--platform", case_sensitive=False, help="Only these platforms (repeatable)."),
    ] = None,
    account: Annotated[
        str, typer.Option("--account", metavar="ID", help="Only this account.")
    ] = "",
    campaign: Annotated[
        str, typer.Option("--campaign", metavar="NAME", help="Only this campaign.")
    ] = "",
    tag: Annotated[
        str, typer.Option("--tag", metavar="TAG", help="Only posts with this tag.")
    ] = "",
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", min=1, help="At most this many posts.")
    ] = LIST_LIMIT,
    order: Annotated[
        names.OrderName, typer.Option("--order", case_sensitive=False, help="Order of results.")
    ] = names.OrderName.newest,
    page_token: Annotated[
        str,
        typer.Option(
            "--page-token",
            metavar="TOKEN",
            help="Continue where an earlier list stopped (the same filters and order).",
        ),
    ] = "",
) -> None:
    """List posts, newest first unless --order says otherwise.

    When more posts match than --limit shows, the command to list the next ones is printed on
    stderr (with --json, `next_page_token` is in the output)."""
    opts = options(ctx)
    request = posts_pb2.ListPostsRequest(
        statuses=[names.post_status(s.value) for s in status or []],
        platforms=[names.platform(p.value) for p in platform or []],
        account_id=account,
        campaign=campaign,
        tag=tag,
        order=names.ORDERS[order],
    )

    async def run(client: KairosClient) -> tuple[list[posts_pb2.Post], str]:
        found: list[posts_pb2.Post] = []
        token = page_token
        while True:
            # Pages end where --limit does, so that the token left over starts at the next post.
            request.page_size = min(limit - len(found), 100)
            request.page_token = token
            page = await client.list_posts(request)
            found.extend(page.posts)
            token = page.next_page_token
            if not token or len(found) >= limit:
                return found, token

    found, next_token = call_api(ctx, run)
    if opts.json:
        print_json({"posts": [message_dict(p) for p in found], "next_page_token": next_token})
        return
    console().print(render.posts_table(found, opts.zone))
    if next_token:
        again = ["kairos", "posts", "list"]
        again += [word for s in status or [] for word in ("--status", s.value)]
        again += [word for p in platform or [] for word in ("--platform", p.value)]
        for name, value in (("--account", account), ("--campaign", campaign), ("--tag", tag)):
            if value:
                again += [name, value]
        if limit != LIST_LIMIT:
            again += ["--limit", str(limit)]
        if order != names.OrderName.newest:
            again += ["--order", order.value]
        hint(f"more posts: {shlex.join([*again, '--page-token', next_token])}")

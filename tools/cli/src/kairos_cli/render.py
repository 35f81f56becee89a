"""Rich tables of posts, targets, attempts, accounts, stats and the calendar.

Every function takes protobuf messages and the zone to show times in, and returns a renderable;
nothing here calls the api or prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from zoneinfo import ZoneInfo

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from kairos.posts.v1 import media_pb2, posts_pb2
from kairos_cli import names
from kairos_cli.tables import Column, FitTable
from kairos_cli.when import show, to_datetime

STATUS_STYLES = {
    "published": "green",
    "scheduled": "cyan",
    "pending_approval": "yellow",
    "publishing": "blue",
    "partially_published": "yellow",
    "failed": "red",
    "missed": "red",
    "unknown": "magenta",
    "rejected": "red",
    "cancelled": "dim",
    "draft": "dim",
    "active": "green",
    "paused": "yellow",
    "needs_reauth": "red",
    "disconnected": "dim",
    "retry_wait": "yellow",
    "skipped": "dim",
}


def status_text(label: str) -> Text:
    return Text(label, style=STATUS_STYLES.get(label, ""))


def excerpt(text: str, width: int = 50) -> str:
    """The first line of `text`, cut to `width` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _fields_table(rows: Sequence[tuple[str, RenderableType]], title: str = "") -> Table:
    table = Table(show_header=False, box=None, title=title or None, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    return table


def _platforms(post: posts_pb2.Post) -> str:
    return ", ".join(sorted({names.platform_label(t.platform) for t in post.targets}))


def _scheduled(post: posts_pb2.Post, zone: ZoneInfo) -> str:
    when = show(post.scheduled_at, zone) if post.HasField("scheduled_at") else "-"
    if post.time_zone and post.HasField("scheduled_at"):
        when += f" (set in {post.time_zone})"
    return when


# --- posts ------------------------------------------------------------------------------------


def posts_table(posts: Sequence[posts_pb2.Post], zone: ZoneInfo, title: str = "") -> FitTable:
    table = FitTable(
        [
            Column("ID", key=True),
            Column("STATUS"),
            Column("SCHEDULED"),
            Column("PLATFORMS"),
            Column("CONTENT", under=20),
            Column("TAGS"),
        ],
        title=title,
        caption="" if posts else "no posts",
    )
    for post in posts:
        table.add_row(
            post.id,
            status_text(names.post_status_label(post.status)),
            show(post.scheduled_at, zone) if post.HasField("scheduled_at") else "-",
            _platforms(post),
            excerpt(post.content),
            ", ".join(post.tags),
        )
    return table


def post_detail(post: posts_pb2.Post, zone: ZoneInfo) -> RenderableType:
    """A post, its targets and every attempt of each."""
    rows: list[tuple[str, RenderableType]] = [
        ("id", post.id),
        ("status", status_text(names.post_status_label(post.status))),
        ("scheduled", _scheduled(post, zone)),
        ("revision", str(post.revision)),
        ("content", post.content),
    ]
    if post.media_ids or post.media_urls:
        rows.append(("media", "\n".join([*post.media_ids, *post.media_urls])))
    if post.campaign:
        rows.append(("campaign", post.campaign))
    if post.tags:
        rows.append(("tags", ", ".join(post.tags)))
    if post.notes:
        rows.append(("notes", post.notes))
    if post.approval_required:
        approved = show(post.approved_at, zone) if post.HasField("approved_at") else "not yet"
        rows.append(("approved", approved))
    if post.rejection_reason:
        rows.append(("rejected", post.rejection_reason))
    if post.HasField("stale_after"):
        rows.append(("stale after", f"{post.stale_after.ToTimedelta().total_seconds():g}s"))
    rows.append(("created", show(post.created_at, zone)))
    rows.append(("updated", show(post.updated_at, zone)))
    parts: list[RenderableType] = [_fields_table(rows), targets_table(post.targets, zone)]
    for target in post.targets:
        if target.attempts:
            parts.append(attempts_table(target, zone))
    return Group(*parts)


def targets_table(targets: Sequence[posts_pb2.Target], zone: ZoneInfo) -> FitTable:
    table = FitTable(
        [
            Column("TARGET", key=True),
            Column("PLATFORM"),
            Column("ACCOUNT", key=True, under=1),
            Column("STATUS"),
            Column("ATTEMPTS", justify="right"),
            Column("NEXT / PUBLISHED"),
            Column("URL", key=True, under=1),
            Column("LAST ERROR", under=20),
        ],
        title="Targets",
    )
    for target in targets:
        if target.HasField("published_at"):
            moment = show(target.published_at, zone)
        elif target.HasField("next_attempt_at"):
            moment = "next " + show(target.next_attempt_at, zone)
        else:
            moment = "-"
        error = target.last_error
        last_error = (
            f"{names.error_class_label(error.error_class)} {error.code} {error.message}".strip()
            if target.HasField("last_error") and (error.message or error.code)
            else "-"
        )
        table.add_row(
            target.id,
            names.platform_label(target.platform),
            target.account_id,
            status_text(names.target_status_label(target.status)),
            str(target.attempt_count),
            moment,
            target.platform_url or "-",
            last_error,
        )
    return table


def attempts_table(target: posts_pb2.Target, zone: ZoneInfo) -> FitTable:
    title = f"Attempts on {names.platform_label(target.platform)} (target {target.id})"
    table = FitTable(
        [
            Column("#", justify="right"),
            Column("STARTED"),
            Column("FINISHED"),
            Column("OUTCOME"),
            Column("HTTP", justify="right"),
            Column("CLASS"),
            Column("CODE"),
            Column("MESSAGE"),
            Column("LATENCY", justify="right"),
        ],
        title=title,
    )
    for attempt in target.attempts:
        if attempt.published:
            outcome = status_text("published")
        elif attempt.HasField("finished_at"):
            outcome = status_text("failed")
        else:
            outcome = Text("in flight", style="blue")
        latency = (
            f"{attempt.latency.ToTimedelta().total_seconds() * 1000:.0f} ms"
            if attempt.HasField("latency")
            else "-"
        )
        table.add_row(
            str(attempt.number),
            show(attempt.started_at, zone),
            show(attempt.finished_at, zone),
            outcome,
            str(attempt.http_status) if attempt.http_status else "-",
            names.error_class_label(attempt.error_class),
            attempt.error_code or "-",
            attempt.message or "-",
            latency,
        )
    return table


# --- accounts ---------------------------------------------------------------------------------


def accounts_table(accounts: Sequence[posts_pb2.Account], zone: ZoneInfo) -> FitTable:
    table = FitTable(
        [
            Column("ID", key=True),
            Column("PLATFORM"),
            Column("HANDLE", under=12),
            Column("STATUS"),
            Column("TOKEN EXPIRES"),
            Column("CONNECTED"),
        ],
        caption="" if accounts else "no accounts",
    )
    for account in accounts:
        table.add_row(
            account.id,
            names.platform_label(account.platform),
            account.handle,
            status_text(names.account_status_label(account.status)),
            show(account.token_expires_at, zone),
            show(account.created_at, zone),
        )
    return table


def account_detail(account: posts_pb2.Account, zone: ZoneInfo) -> Table:
    rows: list[tuple[str, RenderableType]] = [
        ("id", account.id),
        ("platform", names.platform_label(account.platform)),
        ("handle", account.handle),
        ("status", status_text(names.account_status_label(account.status))),
        ("token expires", show(account.token_expires_at, zone)),
        ("blocked until", show(account.blocked_until, zone)),
        ("connected", show(account.created_at, zone)),
        ("updated", show(account.updated_at, zone)),
    ]
    return _fields_table(rows)


# --- media ------------------------------------------------------------------------------------


def media_kind_label(kind: media_pb2.MediaKind.ValueType) -> str:
    name = media_pb2.MediaKind.Name(kind) if kind in media_pb2.MediaKind.values() else ""
    return name.removeprefix("MEDIA_KIND_").lower() or "?"


def byte_size(size: int) -> str:
    """1,234 B, 5.1 MiB: what a person reads at a glance."""
    if size < 1024:
        return f"{size:,} B"
    value, unit = size / 1024, "KiB"
    for larger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.1f} {unit}"


def _dimensions(media: media_pb2.Media) -> str:
    shown = f"{media.width}×{media.height}"
    if media.HasField("duration"):
        shown += f", {media.duration.ToTimedelta().total_seconds():.1f} s"
    return shown


def media_table(media: Sequence[media_pb2.Media], zone: ZoneInfo) -> FitTable:
    table = FitTable(
        [
            Column("ID", key=True),
            Column("KIND"),
            Column("NAME", under=12),
            Column("SIZE", justify="right"),
            Column("PIXELS"),
            Column("UPLOADED"),
        ],
        caption="" if media else "no media",
    )
    for item in media:
        table.add_row(
            item.id,
            media_kind_label(item.kind),
            item.file_name,
            byte_size(item.size),
            _dimensions(item),
            show(item.created_at, zone),
        )
    return table


def media_detail(media: media_pb2.Media, zone: ZoneInfo) -> Table:
    rows: list[tuple[str, RenderableType]] = [
        ("id", media.id),
        ("kind", media_kind_label(media.kind)),
        ("type", media.content_type),
        ("name", media.file_name),
        ("size", f"{byte_size(media.size)} ({media.size:,} bytes)"),
        ("sha256", media.sha256),
        ("pixels", _dimensions(media)),
    ]
    if media.video_codec:
        codecs = media.video_codec + (f" + {media.audio_codec}" if media.audio_codec else "")
        rows.append(("codecs", codecs))
        if media.frame_rate:
            rows.append(("frame rate", f"{media.frame_rate:.3g} fps"))
    rows.append(("uploaded", show(media.created_at, zone)))
    return _fields_table(rows)


# --- stats ------------------------------------------------------------------------------------


def stats_view(stats: posts_pb2.GetStatsResponse, zone: ZoneInfo) -> RenderableType:
    by_status = FitTable(
        [Column("STATUS"), Column("POSTS", justify="right")], title="Posts by status"
    )
    for row in stats.by_status:
        by_status.add_row(status_text(names.post_status_label(row.status)), str(row.count))
    by_platform = FitTable(
        [Column("PLATFORM"), Column("STATUS"), Column("TARGETS", justify="right")],
        title="Targets by platform",
    )
    for item in stats.by_platform:
        by_platform.add_row(
            names.platform_label(item.platform),
            status_text(names.target_status_label(item.status)),
            str(item.count),
        )
    overdue = (
        f"{stats.oldest_overdue_post_id} (due {show(stats.oldest_overdue_at, zone)})"
        if stats.oldest_overdue_post_id
        else "none"
    )
    summary = _fields_table(
        [("due in the next hour", str(stats.due_next_hour)), ("oldest overdue", overdue)]
    )
    return Group(by_status, by_platform, summary)


# --- calendar and watch -----------------------------------------------------------------------


def calendar_day(
    day: date, rows: Sequence[tuple[str, posts_pb2.Post, posts_pb2.Target]], zone: ZoneInfo
) -> FitTable:
    """One local day: (platform, post, target) rows, sorted by platform then time, with a line
    between platforms."""
    count = len({post.id for _, post, _ in rows})
    title = f"{day.strftime('%a %d %b %Y')} — {count} post{'s' if count != 1 else ''}"
    table = FitTable(
        [
            Column("PLATFORM"),
            Column("TIME"),
            Column("POST", key=True),
            Column("ACCOUNT", key=True, under=1),
            Column("STATUS"),
            Column("CONTENT", under=20),
        ],
        title=title,
    )
    if not rows:
        table.add_row("-", "-", "nothing scheduled", "", "", "")
    for index, (platform, post, target) in enumerate(rows):
        moment = to_datetime(post.scheduled_at)
        last_of_platform = index + 1 == len(rows) or rows[index + 1][0] != platform
        table.add_row(
            platform,
            moment.astimezone(zone).strftime("%H:%M:%S %Z") if moment else "-",
            post.id,
            target.account_id,
            status_text(names.post_status_label(post.status)),
            # A post of a recurring series is marked, as calendars mark repeating events.
            ("↻ " if post.series_id else "")
            + excerpt(
                target.content_override if target.HasField("content_override") else post.content
            ),
            end_section=last_of_platform,
        )
    return table


def watch_view(
    upcoming: Sequence[posts_pb2.Post],
    recent: Sequence[posts_pb2.Post],
    zone: ZoneInfo,
    footer: str,
) -> RenderableType:
    return Group(
        posts_table(upcoming, zone, title="Upcoming"),
        recent_table(recent, zone),
        Text(footer, style="dim"),
    )


def recent_table(posts: Sequence[posts_pb2.Post], zone: ZoneInfo) -> FitTable:
    table = FitTable(
        [
            Column("ID", key=True),
            Column("STATUS"),
            Column("SETTLED"),
            Column("TARGETS"),
            Column("CONTENT", under=20),
        ],
        title="Recently published or failed",
        caption="" if posts else "no posts",
    )
    for post in posts:
        targets = ", ".join(
            f"{names.platform_label(t.platform)}: {names.target_status_label(t.status)}"
            + (f" ({t.last_error.message})" if t.last_error.message else "")
            for t in post.targets
        )
        table.add_row(
            post.id,
            status_text(names.post_status_label(post.status)),
            show(post.updated_at, zone),
            targets,
            excerpt(post.content),
        )
    return table

"""Rules shared by creating and changing posts: limits, input types, validation of each field,
the accounts a post targets, and when a change must wake the schedulers."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select

from kairos_api.adapters.orm import Account, Media, Post
from kairos_api.domain import limits, schedule, video
from kairos_api.domain.model import AccountStatus, PostStatus
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.records import PostRecord
from kairos_api.service_layer.queue_slots import QueueInput, queued_start
from kairos_api.service_layer.unit_of_work import UnitOfWork
from kairos_common import errors
from kairos_common.errors import FieldViolation
from kairos_common.platforms import CATALOGUE, Platform, video_rules
from kairos_media.probe import MediaKind

MAX_TARGETS = 50
MAX_TAGS = 30
MAX_TAG_LENGTH = 100
MAX_CAMPAIGN_LENGTH = 200
MAX_NOTES_LENGTH = 10_000
MAX_REQUEST_ID_LENGTH = 128
MAX_REASON_LENGTH = 1_000
MAX_SETTINGS = 20
DEFAULT_PAGE_SIZE = 50
MAX_SCHEDULE_AHEAD = timedelta(days=3650)
#: A post due this soon after a change wakes the schedulers instead of waiting for their tick.
DUE_SOON = timedelta(seconds=60)
MAX_PAGE_SIZE = 100

UPDATABLE_FIELDS = frozenset(
    {
        "content",
        "media_urls",
        "media_ids",
        "campaign",
        "tags",
        "notes",
        "stale_after",
        "approval_required",
        "targets",
    }
)
#: Fields whose change affects what or when something is published.
PUBLISHING_FIELDS = frozenset(
    {"content", "media_urls", "media_ids", "stale_after", "approval_required", "targets"}
)
#: Fields whose change withdraws an approval.
APPROVAL_FIELDS = frozenset({"content", "media_urls", "media_ids", "targets"})


@dataclass(frozen=True)
class TargetInput:
    """Where to publish: an account, with an optional content override and settings."""

    account_id: str
    content_override: str | None = None
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduleInput:
    """A UTC instant, a local wall-clock time in an IANA zone, or a delay from now.

    A delay is resolved against the api's clock when the request arrives; a create's
    `request_hash` covers the delay itself, so that a repeated "in 2h" is the same request.
    """

    at: datetime | None = None
    local_date_time: str | None = None
    time_zone: str | None = None
    after: timedelta | None = None
    #: Add to queue: the instant is the next slot free on every account of the post.
    queue: QueueInput | None = None


_ACCOUNTS_OF_TENANT = select(Account.id, Account.platform, Account.status).where(
    Account.tenant_id == bindparam("tenant"),
    Account.id.in_(bindparam("account_ids", expanding=True)),
)


#: The files a post names, share-locked (PostgreSQL) until the post is written: DeleteMedia
#: locks its file for update, so it either waits and then sees the post, or went first and the
#: file is seen deleted here.
_MEDIA_OF_IDS = (
    select(
        Media.id,
        Media.tenant_id,
        Media.kind,
        Media.deleted_at.is_not(None),
        Media.content_type,
        Media.size,
        Media.width,
        Media.height,
        Media.duration_seconds,
        Media.video_codec,
        Media.audio_codec,
        Media.frame_rate,
    )
    .where(Media.id.in_(bindparam("media_ids", expanding=True)))
    .with_for_update(read=True)
)


def parse_id(value: str, field_name: str) -> uuid.UUID:
    """A UUID from a request field, or INVALID_ARGUMENT naming the field."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        description = "is required" if not value else f"{value[:60]!r} is not a valid id"
        raise errors.InvalidArgument.of(field_name, description) from None


def check_length(value: str, limit: int, field_name: str, violations: list[FieldViolation]) -> None:
    if len(value) > limit:
        violations.append(
            FieldViolation(field_name, f"is {len(value)} characters long; at most {limit}")
        )


def clean_tags(
    tags: Iterable[str], violations: list[FieldViolation], field_name: str = "tags"
) -> list[str]:
    cleaned: list[str] = []
    for index, tag in enumerate(tags):
        value = tag.strip()
        where = f"{field_name}[{index}]"
        if not value:
            violations.append(FieldViolation(where, "must not be empty"))
        elif len(value) > MAX_TAG_LENGTH:
            violations.append(FieldViolation(where, f"is longer than {MAX_TAG_LENGTH} characters"))
        elif value not in cleaned:
            cleaned.append(value)
    if len(cleaned) > MAX_TAGS:
        violations.append(
            FieldViolation(field_name, f"has {len(cleaned)} tags; at most {MAX_TAGS}")
        )
    return cleaned


def check_stale_after(
    value: timedelta | None, violations: list[FieldViolation], field_name: str = "stale_after"
) -> None:
    if value is None:
        return
    try:
        schedule.check_stale_after(value, field_name)
    except errors.InvalidArgument as error:
        violations.extend(error.violations)
        return
    if value.total_seconds() != int(value.total_seconds()):
        # Stored in whole seconds: refuse what would be rounded rather than change it.
        violations.append(FieldViolation(field_name, "must be a whole number of seconds"))


def resolve_schedule(
    app: Application, value: ScheduleInput, field_name: str = "schedule"
) -> tuple[datetime, str]:
    """The instant and time zone of a schedule, refusing DST gaps and times in the past."""
    now = app.clock()
    if value.at is not None:
        at, zone = value.at, ""
    elif value.local_date_time is not None or value.time_zone is not None:
        at = schedule.resolve_local_time(
            value.local_date_time or "", value.time_zone or "", field=f"{field_name}.local"
        )
        zone = value.time_zone or ""
    elif value.after is not None:
        if value.after < timedelta(0):
            raise errors.InvalidArgument.of(f"{field_name}.after", "must not be negative")
        if value.after > MAX_SCHEDULE_AHEAD:  # checked before adding: years past 9999 overflow
            raise errors.InvalidArgument.of(
                f"{field_name}.after", f"is more than {MAX_SCHEDULE_AHEAD.days // 365} years"
            )
        at, zone = now + value.after, ""
    elif value.queue is not None:
        raise ValueError("a queued schedule's instant is the slot it takes: queue_start")
    else:
        raise errors.InvalidArgument.of(field_name, "set one of `at`, `local`, `after` or `queue`")
    schedule.check_not_in_past(at, now, tolerance=app.settings.past_tolerance, field=field_name)
    if at - now > MAX_SCHEDULE_AHEAD:
        raise errors.InvalidArgument.of(
            field_name, f"is more than {MAX_SCHEDULE_AHEAD.days // 365} years ahead"
        )
    return at, zone


def queue_start(
    app: Application, value: QueueInput, field_name: str = "schedule.queue"
) -> datetime:
    """From when a queued post looks for a free slot: now, or the given `not_before`."""
    now = app.clock()
    not_before = value.not_before
    if not_before is not None and not_before - now > MAX_SCHEDULE_AHEAD:
        raise errors.InvalidArgument.of(
            f"{field_name}.not_before",
            f"is more than {MAX_SCHEDULE_AHEAD.days // 365} years ahead",
        )
    return queued_start(now, not_before)


def target_violations(
    targets: Sequence[TargetInput], violations: list[FieldViolation]
) -> list[uuid.UUID | None]:
    """Parsed account ids (None where invalid), recording what is wrong with each target."""
    if not targets:
        violations.append(FieldViolation("targets", "at least one target is required"))
    if len(targets) > MAX_TARGETS:
        violations.append(
            FieldViolation("targets", f"has {len(targets)} targets; at most {MAX_TARGETS}")
        )
    ids: list[uuid.UUID | None] = []
    seen: set[uuid.UUID] = set()
    for index, target in enumerate(targets):
        prefix = f"targets[{index}]"
        try:
            account_id: uuid.UUID | None = parse_id(target.account_id, f"{prefix}.account_id")
        except errors.InvalidArgument as error:
            violations.extend(error.violations)
            account_id = None
        if account_id is not None and account_id in seen:
            violations.append(
                FieldViolation(f"{prefix}.account_id", "the same account is targeted twice")
            )
        if account_id is not None:
            seen.add(account_id)
        if len(target.settings) > MAX_SETTINGS:
            violations.append(
                FieldViolation(f"{prefix}.settings", f"at most {MAX_SETTINGS} settings")
            )
        for key, value in target.settings.items():
            if not key or len(key) > 64 or len(value) > 1000:
                violations.append(
                    FieldViolation(
                        f"{prefix}.settings",
                        "keys must be 1-64 characters and values at most 1,000",
                    )
                )
                break
        ids.append(account_id)
    return ids


class AccountRef(NamedTuple):
    """What creating or editing a post needs of a targeted account."""

    platform: str
    status: str


async def accounts_of(
    uow: UnitOfWork, tenant: str, ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID, AccountRef]:
    """The tenant's accounts among `ids` (one query); others are missing from the answer."""
    wanted = list(dict.fromkeys(i for i in ids if i is not None))
    if not wanted:
        return {}
    connection = await uow.session.connection()
    rows = await connection.execute(_ACCOUNTS_OF_TENANT, {"tenant": tenant, "account_ids": wanted})
    return {row[0]: AccountRef(row[1], row[2]) for row in rows}


def account_violations(
    ids: Sequence[uuid.UUID | None],
    found: dict[uuid.UUID, AccountRef],
    violations: list[FieldViolation],
) -> None:
    for index, account_id in enumerate(ids):
        if account_id is None:
            continue
        account = found.get(account_id)
        if account is None:
            violations.append(
                FieldViolation(f"targets[{index}].account_id", f"account {account_id} not found")
            )
        elif account.status == AccountStatus.DISCONNECTED:
            violations.append(
                FieldViolation(
                    f"targets[{index}].account_id", f"account {account_id} is disconnected"
                )
            )


def media_id_violations(
    media_ids: Sequence[str], violations: list[FieldViolation], field_name: str = "media_ids"
) -> list[uuid.UUID | None]:
    """Parsed media ids (None where invalid), recording ids that do not parse or repeat."""
    parsed: list[uuid.UUID | None] = []
    seen: dict[uuid.UUID, int] = {}
    for index, value in enumerate(media_ids):
        named = f"{field_name}[{index}]"
        try:
            ident: uuid.UUID | None = parse_id(value, named)
        except errors.InvalidArgument as error:
            violations.extend(error.violations)
            ident = None
        if ident is not None and ident in seen:
            violations.append(
                FieldViolation(named, f"names the same media as {field_name}[{seen[ident]}]")
            )
        elif ident is not None:
            seen[ident] = index
        parsed.append(ident)
    return parsed


class TargetPlatform(NamedTuple):
    """A target as the media rules see it: where it is in the request, its platform, settings,
    and the text it publishes (its override, else the post's)."""

    position: int
    platform: str
    settings: Mapping[str, str]
    text: str = ""
    #: The field the text came from: "content" or "targets[i].content_override".
    text_field: str = "content"


def target_platforms(
    targets: Sequence[TargetInput],
    ids: Sequence[uuid.UUID | None],
    accounts: Mapping[uuid.UUID, AccountRef],
    content: str = "",
) -> list[TargetPlatform]:
    """The targets whose account was found, with their platforms and texts."""
    found = []
    for index, (target, account_id) in enumerate(zip(targets, ids, strict=True)):
        account = accounts.get(account_id) if account_id is not None else None
        if account is None:
            continue
        if target.content_override is not None:
            text, field_name = target.content_override, f"targets[{index}].content_override"
        else:
            text, field_name = content, "content"
        found.append(TargetPlatform(index, account.platform, target.settings, text, field_name))
    return found


async def uploaded_media_violations(
    app: Application,
    uow: UnitOfWork,
    tenant: str,
    media_ids: Sequence[uuid.UUID | None],
    targets: Sequence[TargetPlatform],
    *,
    media_urls: int = 0,
    field_name: str = "media_ids",
) -> list[FieldViolation]:
    """What is wrong with the uploaded files a post names (one query): each must be the tenant's
    and not deleted; a video must be the post's only media item and suit every target's
    platform (`domain.video`); and every platform that pulls media by URL needs a store that
    makes URLs."""
    wanted = list(dict.fromkeys(i for i in media_ids if i is not None))
    if not wanted:
        return []
    connection = await uow.session.connection()
    rows = await connection.execute(_MEDIA_OF_IDS, {"media_ids": wanted})
    found = {row[0]: row for row in rows}
    violations: list[FieldViolation] = []
    items = len(media_ids) + media_urls
    for index, ident in enumerate(media_ids):
        if ident is None:
            continue
        named = f"{field_name}[{index}]"
        row = found.get(ident)
        if row is None or row[1] != tenant:
            violations.append(FieldViolation(named, f"media {ident} not found"))
        elif row[3]:
            violations.append(FieldViolation(named, f"media {ident} was deleted"))
        elif row[2] != MediaKind.VIDEO:
            for target in targets:
                info = CATALOGUE[Platform(target.platform)]
                if info.limits.video_only:
                    violations.append(
                        FieldViolation(
                            named,
                            f"media {ident} is an image; {info.name} takes one uploaded video "
                            f"and nothing else (for targets[{target.position}])",
                        )
                    )
        else:
            if items > 1:
                violations.append(
                    FieldViolation(
                        named,
                        f"media {ident} is a video, and a video must be the post's only media "
                        f"item; this post has {items}",
                    )
                )
            violations.extend(_video_violations(named, ident, row, targets))
    if not app.media.makes_urls:
        kinds = {str(row[2]) for row in found.values()}
        for platform in dict.fromkeys(t.platform for t in targets):
            info = CATALOGUE[Platform(platform)]
            # A platform sent a video's bytes (Telegram, Slack, Discord) needs no URL for it.
            if any(info.pulls_by_url(kind) for kind in kinds):
                violations.append(
                    FieldViolation(
                        field_name,
                        f"{info.name} pulls media by URL, and the filesystem media store makes "
                        "no URLs; uploaded media can go to it from an S3 store "
                        "(KAIROS_MEDIA_STORE=s3://bucket/prefix)",
                    )
                )
    return violations


def _video_violations(
    named: str, ident: uuid.UUID, row: Any, targets: Sequence[TargetPlatform]
) -> list[FieldViolation]:
    facts = video.VideoFacts(
        content_type=row[4],
        size=row[5],
        width=row[6],
        height=row[7],
        duration_seconds=row[8] or 0.0,
        video_codec=row[9],
        audio_codec=row[10],
        frame_rate=row[11],
    )
    found: list[FieldViolation] = []
    for target in targets:
        platform = Platform(target.platform)
        name = CATALOGUE[platform].name
        rules = video_rules(platform, target.settings)
        where = f"for targets[{target.position}]"
        if rules is None:
            found.append(
                FieldViolation(named, f"media {ident} is a video; {name} takes no video ({where})")
            )
            continue
        for problem in video.problems(facts, rules, name):
            found.append(FieldViolation(named, f"media {ident} {problem} ({where})"))
        if rules.max_chars is not None:
            length = limits.count_characters(platform, target.text)
            if length > rules.max_chars:
                unit = CATALOGUE[platform].limits.unit
                found.append(
                    FieldViolation(
                        target.text_field,
                        f"is {length:,} {unit}; {name} takes at most {rules.max_chars:,} with "
                        f"{rules.what} ({where})",
                    )
                )
    return found


def content_violations(
    app: Application,
    targets: Sequence[TargetPlatform],
    media_urls: Sequence[str],
    uploads: int = 0,
) -> list[FieldViolation]:
    """What each target's platform would refuse: its text and the media by its limits, and the
    target's settings by the settings its catalogue row declares."""
    found: list[FieldViolation] = []
    for target in targets:
        platform = Platform(target.platform)
        found.extend(
            limits.validate_settings(
                platform,
                target.settings,
                field=f"targets[{target.position}].settings",
                media_count=len(media_urls),
            )
        )
        found.extend(
            limits.validate_content(
                platform,
                target.text,
                list(media_urls),
                content_field=target.text_field,
                media_field="media_urls",
                allow_http_media=app.settings.allow_http_media,
                uploads=uploads,
            )
        )
    return list(dict.fromkeys(found))


def stale_at(post: Post, due: datetime | None, default: timedelta) -> datetime | None:
    """When a target due at `due` stops being worth publishing (the post's stale_after)."""
    if due is None:
        return None
    window = (
        timedelta(seconds=post.stale_after_seconds)
        if post.stale_after_seconds is not None
        else default
    )
    return due + window


def wake_if_due_soon(app: Application, post: Post | PostRecord, now: datetime) -> None:
    if (
        post.status == PostStatus.SCHEDULED
        and post.scheduled_at is not None
        and post.scheduled_at - now <= DUE_SOON
    ):
        app.notifier.due_soon()

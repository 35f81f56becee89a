"""ValidatePost: what CreatePost would say of a request, and each target's text counted as its
platform counts it, writing nothing.

A composer (the browser console) shows a per-platform character counter and the problems next
to their fields as the user types; it never touches the database, so it asks the api. The
answer must agree with CreatePost to the character, so nothing here counts or checks on its
own: the violations are CreatePost's own checks (`draft_of`, then `validate_one`, the path of
BatchCreatePosts' validate_only), and the lengths come from `limits.count_characters` on the
text `target_platforms` picks for each target, the same calls `content_violations` makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kairos_api.domain import limits
from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.create import CreatePost, draft_of, validate_one
from kairos_api.service_layer.posts.rules import target_platforms
from kairos_common import errors
from kairos_common.errors import FieldViolation
from kairos_common.platforms import CATALOGUE, Platform


@dataclass(frozen=True)
class TargetCount:
    """One target's text measured on its platform, beside that platform's limits."""

    #: The account as the request named it.
    account_id: str
    #: The account's platform; None when the account is not the tenant's (or the id is not
    #: one), and then every number is 0: a violation names the account.
    platform: Platform | None = None
    #: The text's length as `platform` counts it, in `unit`.
    length: int = 0
    #: The most text the platform takes in this post (its caption limit when media is attached).
    max_length: int = 0
    #: What `length` counts, in words.
    unit: str = ""
    #: The post's media items, uploaded and by URL.
    media_count: int = 0
    #: The most media items the platform takes in one post.
    max_media: int = 0


@dataclass(frozen=True)
class PostCheck:
    """ValidatePost's answer: each target counted, and every violation CreatePost would raise."""

    targets: tuple[TargetCount, ...]
    violations: tuple[FieldViolation, ...]


async def validate_post(
    app: Application,
    tenant: str,
    command: CreatePost,
    unreadable: Sequence[FieldViolation] = (),
) -> PostCheck:
    """Check `command` as CreatePost would and count each target; nothing is written.

    `unreadable` are the violations of fields the transport could not read (left out of
    `command`), which CreatePost would have refused with alone; they come first, and the rest
    of the post is still checked so that the caller sees everything at once.
    """
    draft = draft_of(app, tenant, command)
    outcome, accounts = await validate_one(app, draft)
    violations = list(unreadable)
    if isinstance(outcome, errors.InvalidArgument):
        violations.extend(outcome.violations)
    media_count = len(command.media_urls) + len(command.media_ids)
    counts = [TargetCount(target.account_id) for target in command.targets]
    for found in target_platforms(command.targets, draft.account_ids, accounts, command.content):
        platform = Platform(found.platform)
        rules = CATALOGUE[platform].limits
        counts[found.position] = TargetCount(
            account_id=command.targets[found.position].account_id,
            platform=platform,
            length=limits.count_characters(platform, found.text),
            max_length=limits.max_text_length(rules, has_media=media_count > 0),
            unit=rules.unit,
            media_count=media_count,
            max_media=rules.max_media,
        )
    return PostCheck(tuple(counts), tuple(violations))

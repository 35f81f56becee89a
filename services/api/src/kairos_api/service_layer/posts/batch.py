"""BatchCreatePosts: up to 1,000 creates in one call, each answered on its own.

Every item is checked exactly as CreatePost checks one request, then the valid ones ride the
group commit (`CreateBatcher.create_all`): the batch fills whole transactions instead of paying
one commit per post. The batch is not all-or-nothing: a refused item writes nothing and the
valid ones are created; `validate_only` runs every check and writes nothing, so a caller who
wants all or nothing validates first (the CLI's import does). One transaction for 1,000 posts
would hold the group commit's writers for every CreatePost arriving meanwhile, and a retry with
the same request_ids makes the outcome whole anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kairos_api.service_layer.application import Application
from kairos_api.service_layer.posts.batcher import CreateBatcher
from kairos_api.service_layer.posts.create import CreatePost, draft_of, validate_many
from kairos_api.service_layer.posts.records import PostRecord
from kairos_common import errors
from kairos_common.errors import FieldViolation

#: The most items one BatchCreatePosts takes.
MAX_ITEMS = 1_000


@dataclass(frozen=True)
class ItemResult:
    """The answer to one item: its post, or the violations that refused it."""

    record: PostRecord | None
    #: The item's violations, each field named from the batch (`items[3].content`).
    violations: tuple[FieldViolation, ...] = ()
    #: True when an earlier create with the same request_id made the post.
    repeated: bool = False


async def batch_create_posts(
    app: Application,
    batcher: CreateBatcher,
    tenant: str,
    items: Sequence[CreatePost | errors.InvalidArgument],
    *,
    validate_only: bool = False,
) -> list[ItemResult]:
    """Create (or with `validate_only`, check) each item; one result per item, in order.

    An item may arrive already refused (the transport could not read it); its violations are
    named within the item, as CreatePost's are, and get the `items[i].` prefix here.
    """
    if not items:
        raise errors.InvalidArgument.of("items", "give at least one item")
    if len(items) > MAX_ITEMS:
        raise errors.InvalidArgument.of(
            "items", f"at most {MAX_ITEMS:,} items per call, got {len(items):,}; split the batch"
        )
    positions: list[int] = []
    drafts = []
    results: list[ItemResult | None] = [None] * len(items)
    for index, item in enumerate(items):
        if isinstance(item, errors.InvalidArgument):
            results[index] = ItemResult(None, _within(index, item))
        else:
            positions.append(index)
            drafts.append(draft_of(app, tenant, item))
    if drafts:
        outcomes = (
            await validate_many(app, drafts) if validate_only else await batcher.create_all(drafts)
        )
        for index, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, errors.InvalidArgument):
                results[index] = ItemResult(None, _within(index, outcome))
            else:
                results[index] = ItemResult(outcome.record, repeated=outcome.repeated)
    return [r for r in results if r is not None]


def _within(index: int, error: errors.InvalidArgument) -> tuple[FieldViolation, ...]:
    """The error's violations named from the batch; one on the item itself if it named none."""
    prefix = f"items[{index}]"
    if not error.violations:
        return (FieldViolation(prefix, error.message),)
    return tuple(FieldViolation(f"{prefix}.{v.field}", v.description) for v in error.violations)

"""Use cases of PostsService: create, edit, schedule, approve, delete, retry and read posts.

One module per use case: `create` (and `batcher`, its group commit, `batch`, BatchCreatePosts
on top of it, and `validate`, ValidatePost's checks and counts), `commands` (the changes to an
existing post), `views` (GetPost, ListPosts) with `records` and `page_tokens`, `stats` (GetStats
and the fold of its counts), and `rules`, the validation creating and changing share.

Each handler validates everything first and collects every violation, then makes its change and
the matching lifecycle events in one transaction, so a refused request writes nothing.

Rules worth knowing:
- Only changes that affect publishing (content, media, targets, schedule, stale_after, approval)
  bump `revision`; notes, tags and campaign do not, so they never fence out a delivery.
- A change that bumps the revision takes every QUEUED target back to PENDING and clears its
  delivery, so the old due event fails the fence and the target is claimed again with the new
  content or time. A PUBLISHING target cannot be changed: the call may already be under way.
- A target is claimable exactly when `next_attempt_at` is set; it is set only while the post is
  SCHEDULED (and approved, when approval is required).
- Changing the content, media or targets of an approved post withdraws the approval.
- New targets (UpdatePost with "targets") keep the row, state and attempts of every target
  whose account stays; only added targets need a connected account, so a post whose account
  was disconnected since can still be edited. A target that was, is being or may have been
  published cannot be left out, and at least one target must still be able to publish.
- Creates that arrive together share one transaction (`CreateBatcher`, group commit); each is
  still validated and answered on its own, and a refused one writes nothing.
- A repeated `request_id` is answered with the first post only when the request is the same
  (`request_hash`); with a different request it is refused, so a mistaken reuse is not
  mistaken for a retry.
"""

from kairos_api.service_layer.posts.batch import MAX_ITEMS, ItemResult, batch_create_posts
from kairos_api.service_layer.posts.batcher import CreateBatcher
from kairos_api.service_layer.posts.commands import (
    UpdatePost,
    approve_post,
    delete_post,
    publish_now,
    reject_post,
    retry_post,
    schedule_post,
    unschedule_post,
    update_post,
)
from kairos_api.service_layer.posts.create import CreatePost, create_post
from kairos_api.service_layer.posts.records import PostRecord
from kairos_api.service_layer.posts.rules import ScheduleInput, TargetInput
from kairos_api.service_layer.posts.stats import fold_stats, fold_stats_until, get_stats
from kairos_api.service_layer.posts.validate import PostCheck, TargetCount, validate_post
from kairos_api.service_layer.posts.views import ListPosts, get_post, list_posts

__all__ = [
    "MAX_ITEMS",
    "CreateBatcher",
    "CreatePost",
    "ItemResult",
    "ListPosts",
    "PostCheck",
    "PostRecord",
    "ScheduleInput",
    "TargetCount",
    "TargetInput",
    "UpdatePost",
    "approve_post",
    "batch_create_posts",
    "create_post",
    "delete_post",
    "fold_stats",
    "fold_stats_until",
    "get_post",
    "get_stats",
    "list_posts",
    "publish_now",
    "reject_post",
    "retry_post",
    "schedule_post",
    "unschedule_post",
    "update_post",
    "validate_post",
]

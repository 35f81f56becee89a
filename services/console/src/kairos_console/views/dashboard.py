"""The dashboard: counts by state and platform, what is due soon, the oldest overdue post, the
lateness of recent deliveries, and an inbox of what needs a person (FAILED, UNKNOWN and MISSED
targets, accounts that need signing in again)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kairos.posts.v1 import posts_pb2
from kairos_console import lateness
from kairos_console.app import api
from kairos_console.render import render

routes = web.RouteTableDef()

#: Post states that hold a target a person should look at.
NEEDS_A_LOOK = [
    posts_pb2.POST_STATUS_FAILED,
    posts_pb2.POST_STATUS_PARTIALLY_PUBLISHED,
    posts_pb2.POST_STATUS_UNKNOWN,
    posts_pb2.POST_STATUS_MISSED,
]
#: Target states that go in the inbox.
INBOX_STATES = frozenset(
    {
        posts_pb2.TARGET_STATUS_FAILED,
        posts_pb2.TARGET_STATUS_UNKNOWN,
        posts_pb2.TARGET_STATUS_MISSED,
    }
)

#: How many of the newest published posts the lateness chart looks at (ListPosts' largest page).
LATENESS_POSTS = 100


#: Every state, in the proto's order, for the count tables.
TARGET_STATES = [
    v for v in posts_pb2.TargetStatus.values() if v != posts_pb2.TARGET_STATUS_UNSPECIFIED
]
POST_STATES = [v for v in posts_pb2.PostStatus.values() if v != posts_pb2.POST_STATUS_UNSPECIFIED]


@dataclass(frozen=True)
class InboxItem:
    post: posts_pb2.Post
    target: posts_pb2.Target


async def dashboard_context(request: web.Request) -> dict[str, Any]:
    client = api(request)
    stats, troubled, soon, reauth, published = await asyncio.gather(
        client.get_stats(),
        client.list_posts(
            posts_pb2.ListPostsRequest(
                statuses=NEEDS_A_LOOK, page_size=50, order=posts_pb2.POST_ORDER_CREATED_NEWEST
            )
        ),
        client.list_posts(
            posts_pb2.ListPostsRequest(
                statuses=[posts_pb2.POST_STATUS_SCHEDULED],
                page_size=10,
                order=posts_pb2.POST_ORDER_SCHEDULED_SOONEST,
            )
        ),
        client.list_accounts(status=posts_pb2.ACCOUNT_STATUS_NEEDS_REAUTH),
        client.list_posts(
            posts_pb2.ListPostsRequest(
                statuses=[posts_pb2.POST_STATUS_PUBLISHED],
                page_size=LATENESS_POSTS,
                order=posts_pb2.POST_ORDER_CREATED_NEWEST,
            )
        ),
    )
    by_platform: defaultdict[int, dict[int, int]] = defaultdict(dict)
    for row in stats.by_platform:
        by_platform[row.platform][row.status] = row.count
    inbox = [
        InboxItem(post, target)
        for post in troubled.posts
        for target in post.targets
        if target.status in INBOX_STATES
    ]
    return {
        "stats": stats,
        "by_status": {row.status: row.count for row in stats.by_status},
        "by_platform": dict(by_platform),
        "target_states": TARGET_STATES,
        "post_states": POST_STATES,
        "soon": soon.posts,
        "inbox": inbox,
        # More posts need a look than the page asked for: said, so none seems forgotten.
        "inbox_more": bool(troubled.next_page_token),
        "reauth": reauth,
        "lateness": lateness.chart(published.posts),
    }


@routes.get("/")
async def dashboard(request: web.Request) -> web.Response:
    return render(request, "dashboard.html", **await dashboard_context(request))


@routes.get("/dashboard/live")
async def dashboard_fragment(request: web.Request) -> web.Response:
    """The dashboard's body alone, for the page's script to swap in when events arrive."""
    return render(request, "dashboard_body.html", **await dashboard_context(request))

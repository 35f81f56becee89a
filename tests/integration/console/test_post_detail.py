"""Post detail (`/posts/<id>`): the post, its targets and their attempts as the api holds them,
and its actions (retry a target, publish now, unschedule, delete, approve, reject) with what
the api then holds, or its refusal beside the action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from integration.api.helpers_posts import NEXT_YEAR

from kairos.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from kairos.posts.v1 import posts_pb2
from kairos_client import KairosClient, KairosError, schedule_after, schedule_local
from support.api import SERVICE_TOKEN, RunningApi
from support.console import Browser, Page

from .conftest import Tenant

SERVICE = (("authorization", f"Bearer {SERVICE_TOKEN}"),)


def seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromTimedelta(timedelta(seconds=value))
    return duration


async def create(
    tenant: Tenant,
    *account_ids: str,
    schedule: posts_pb2.Schedule | None = None,
    content: str = "Hello from the console",
    **fields: Any,
) -> posts_pb2.Post:
    return await tenant.client.create_post(
        posts_pb2.CreatePostRequest(
            content=content,
            targets=[posts_pb2.TargetSpec(account_id=a) for a in account_ids]
            or [posts_pb2.TargetSpec(account_id=tenant.account.id)],
            schedule=schedule,
            **fields,
        )
    )


async def publish_as_the_publisher_would(
    api: RunningApi, post: posts_pb2.Post, outcomes: dict[str, dispatch_pb2.AttemptOutcome]
) -> None:
    """Claim the post's due targets and complete one attempt of each with its outcome (the
    attempt and delivery ids filled in), through the api's DispatchService."""
    async with grpc.aio.insecure_channel(api.target) as channel:
        dispatch: dispatch_pb2_grpc.DispatchServiceAsyncStub = (
            dispatch_pb2_grpc.DispatchServiceStub(channel)
        )
        claimed = await dispatch.ClaimDue(
            dispatch_pb2.ClaimDueRequest(horizon=seconds(1), limit=500, lease=seconds(60)),
            metadata=SERVICE,
        )
        deliveries = {d.target_id: d for d in claimed.deliveries if d.post_id == post.id}
        assert set(deliveries) == set(outcomes)
        for target_id, outcome in outcomes.items():
            delivery = deliveries[target_id]
            begun = await dispatch.BeginAttempt(
                dispatch_pb2.BeginAttemptRequest(delivery_id=delivery.delivery_id),
                metadata=SERVICE,
            )
            assert begun.ok, begun.reason
            outcome.attempt_id = begun.attempt_id
            outcome.delivery_id = delivery.delivery_id
            await dispatch.CompleteAttempts(
                dispatch_pb2.CompleteAttemptsRequest(outcomes=[outcome]), metadata=SERVICE
            )


async def failed_and_published(
    console_api: RunningApi, tenant: Tenant
) -> tuple[posts_pb2.Post, posts_pb2.Account]:
    """A post to two accounts: published on the second, failed for good on the first."""
    second = await tenant.client.connect_account(
        posts_pb2.ConnectAccountRequest(
            platform=posts_pb2.PLATFORM_SANDBOX,
            handle="@second",
            credentials=posts_pb2.Credentials(access_token="t", instance_url="http://127.0.0.1:9"),
        )
    )
    post = await create(tenant, tenant.account.id, second.id, schedule=schedule_after(timedelta()))
    by_account = {t.account_id: t.id for t in post.targets}
    latency = seconds(0.25)
    await publish_as_the_publisher_would(
        console_api,
        post,
        {
            by_account[tenant.account.id]: dispatch_pb2.AttemptOutcome(
                error_class=posts_pb2.ERROR_CLASS_PERMANENT,
                error_code="bad_request",
                message="The sandbox said no",
                http_status=400,
                latency=latency,
            ),
            by_account[second.id]: dispatch_pb2.AttemptOutcome(
                published=dispatch_pb2.Published(
                    platform_post_id="42", url="https://sandbox.example/42"
                ),
                http_status=201,
                latency=latency,
            ),
        },
    )
    return await tenant.client.get_post(post.id), second


def row_of(page: Page, target: posts_pb2.Target) -> Page:
    """The target's row of the page, as a page of its own."""
    return Page(
        page.status, page.url, page.headers, str(page.one(f"tr[data-target-id='{target.id}']"))
    )


async def test_the_page_lists_each_target_and_each_attempt(
    browser: Browser, tenant: Tenant, console_api: RunningApi
) -> None:
    post, second = await failed_and_published(console_api, tenant)
    failed = next(t for t in post.targets if t.account_id == tenant.account.id)
    published = next(t for t in post.targets if t.account_id == second.id)
    page = await browser.get(f"/posts/{post.id}")
    assert page.status == 200
    assert page.one("#post")["data-post-status"] == "partially published"
    assert page.texts("#post-content") == ["Hello from the console"]

    failed_row = row_of(page, failed)
    assert failed_row.one("tr")["data-target-status"] == "failed"
    assert failed_row.texts("th") == ["sandbox @console"]
    assert failed_row.texts("[data-attempt-count]") == ["1"]
    assert failed_row.texts("[data-last-error]") == ["permanent bad_request The sandbox said no"]
    assert failed_row.one("button").get_text(" ", strip=True).startswith("Retry")
    published_row = row_of(page, published)
    assert published_row.one("tr")["data-target-status"] == "published"
    assert published_row.one("[data-platform-url]")["href"] == "https://sandbox.example/42"
    assert not published_row.all("form")  # a published target is never sent again

    [failed_attempt] = page.all(f"[data-attempts-for='{failed.id}'] tr[data-attempt-number]")
    cells = [" ".join(td.get_text(" ").split()) for td in failed_attempt.select("td")]
    started = failed.attempts[0].started_at.ToDatetime(tzinfo=UTC)
    berlin = started.astimezone(ZoneInfo("Europe/Berlin"))
    assert cells[0] == "1"
    assert cells[1] == berlin.strftime("%Y-%m-%d %H:%M:%S")
    assert cells[3:] == ["permanent", "400", "bad_request", "The sandbox said no", "0.250 s"]
    [published_attempt] = page.all(f"[data-attempts-for='{published.id}'] tr[data-attempt-number]")
    assert [td.get_text() for td in published_attempt.select("[data-outcome]")] == ["published"]
    # Nothing to publish, unschedule or approve on a post that has gone out.
    assert [str(form["data-action"]) for form in page.all("form[data-action]")] == [
        "delete",
        "retry",
    ]


async def test_retrying_one_target_makes_it_pending_again(
    browser: Browser, tenant: Tenant, console_api: RunningApi
) -> None:
    post, second = await failed_and_published(console_api, tenant)
    failed = next(t for t in post.targets if t.account_id == tenant.account.id)
    await browser.get(f"/posts/{post.id}")
    done = await browser.post(f"/posts/{post.id}/retry", {"target_id": failed.id})
    assert done.status == 200
    assert done.path == f"/posts/{post.id}?done=retried"
    assert done.texts("[role=status]") == ["The target will be tried again."]
    after = {t.id: t for t in (await tenant.client.get_post(post.id)).targets}
    assert after[failed.id].status == posts_pb2.TARGET_STATUS_PENDING
    assert next(t for t in after.values() if t.account_id == second.id).status == (
        posts_pb2.TARGET_STATUS_PUBLISHED
    )
    assert done.one(f"tr[data-target-id='{failed.id}']")["data-target-status"] == "pending"

    # Sent again from the page as it was: the api's refusal, beside the page's actions.
    again = await browser.post(f"/posts/{post.id}/retry", {"target_id": failed.id})
    assert again.status == 409
    assert any("only failed, unknown or missed" in text for text in again.texts("#form-errors li"))


async def test_delete_needs_the_box_ticked_and_then_the_post_is_gone(
    browser: Browser, tenant: Tenant
) -> None:
    post = await create(tenant)
    page = await browser.get(f"/posts/{post.id}")
    assert page.one("#delete-confirm").has_attr("required")
    unconfirmed = await browser.post(f"/posts/{post.id}/delete")
    assert unconfirmed.status == 400
    box = unconfirmed.one("#delete-confirm")
    assert box["aria-invalid"] == "true"
    assert unconfirmed.texts(f"#{box['aria-describedby']}") == [
        "Tick the box to confirm that this post is to be deleted."
    ]
    assert (await tenant.client.get_post(post.id)).id == post.id  # still there
    # The zone form on that page returns to its address: the post's page, not an error.
    rezoned = await browser.post("/zone", {"zone": "UTC", "next": f"/posts/{post.id}/delete"})
    assert rezoned.path == f"/posts/{post.id}?done=zone"
    assert rezoned.texts("[role=status]") == ["Times are now shown in your chosen zone."]

    deleted = await browser.post(f"/posts/{post.id}/delete", {"confirm": "yes"})
    assert deleted.path == "/?done=deleted"
    assert deleted.texts("[role=status]") == ["The post is deleted."]
    with pytest.raises(KairosError) as gone:
        await tenant.client.get_post(post.id)
    assert gone.value.code == grpc.StatusCode.NOT_FOUND
    assert (await browser.get(f"/posts/{post.id}")).status == 404


async def test_another_tenants_post_is_not_found(browser: Browser, console_api: RunningApi) -> None:
    _, key = await console_api.new_key()
    async with KairosClient(console_api.target, key) as other:
        account = await other.connect_account(
            posts_pb2.ConnectAccountRequest(
                platform=posts_pb2.PLATFORM_SANDBOX,
                handle="@other",
                credentials=posts_pb2.Credentials(access_token="t", instance_url="http://x"),
            )
        )
        theirs = await other.create_post(
            posts_pb2.CreatePostRequest(
                content="Not yours", targets=[posts_pb2.TargetSpec(account_id=account.id)]
            )
        )
    page = await browser.get(f"/posts/{theirs.id}")
    assert page.status == 404
    assert page.texts("[role=alert]") == [f"post {theirs.id} not found"]
    assert "Not yours" not in page.text
    refused = await browser.post(f"/posts/{theirs.id}/delete", {"confirm": "yes"})
    assert refused.status == 404


async def test_a_scheduled_post_shows_its_time_and_can_be_unscheduled_or_published_now(
    browser: Browser, tenant: Tenant
) -> None:
    post = await create(
        tenant,
        schedule=schedule_local(f"{NEXT_YEAR}-01-15T08:00", "America/New_York"),
        campaign="winter",
        tags=["a", "b"],
    )
    page = await browser.get(f"/posts/{post.id}")
    # 08:00 in New York in January is 13:00 UTC, 14:00 in Berlin (the session's zone).
    assert page.texts("[data-fact=schedule] time") == [f"{NEXT_YEAR}-01-15 14:00"]
    assert f"{NEXT_YEAR}-01-15 08:00 in America/New_York" in page.texts("[data-fact=schedule]")[0]
    assert page.texts("[data-fact=campaign]") == ["winter"]
    assert page.texts("[data-fact=tags] li") == ["a", "b"]
    assert {str(f["data-action"]) for f in page.all("form[data-action]")} == {
        "publish-now",
        "unschedule",
        "delete",
    }

    unscheduled = await browser.post(f"/posts/{post.id}/unschedule")
    assert unscheduled.path == f"/posts/{post.id}?done=unscheduled"
    assert (await tenant.client.get_post(post.id)).status == posts_pb2.POST_STATUS_DRAFT
    assert unscheduled.texts("[data-fact=schedule]") == ["Not scheduled"]
    assert not unscheduled.all("form[data-action=unschedule]")

    published = await browser.post(f"/posts/{post.id}/publish-now")
    assert published.path == f"/posts/{post.id}?done=published-now"
    now = (await tenant.client.get_post(post.id)).scheduled_at.ToDatetime(tzinfo=UTC)
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=1)


async def test_a_post_waiting_for_approval_is_approved_or_rejected_with_a_reason(
    browser: Browser, tenant: Tenant
) -> None:
    post = await create(
        tenant,
        schedule=schedule_local(f"{NEXT_YEAR}-01-15T08:00", "Europe/Berlin"),
        approval_required=True,
    )
    page = await browser.get(f"/posts/{post.id}")
    assert page.texts("[data-fact=approval]") == ["Waiting for approval"]
    actions = {str(f["data-action"]) for f in page.all("form[data-action]")}
    assert actions == {"unschedule", "approve", "reject", "delete"}  # not publish now

    # Publishing now anyway (a stale page): the api's refusal, beside the page's actions.
    refused = await browser.post(f"/posts/{post.id}/publish-now")
    assert refused.status == 409
    assert refused.texts("#form-errors li") == [
        f"post {post.id} requires approval before it can be published"
    ]

    no_reason = await browser.post(f"/posts/{post.id}/reject", {"reason": "  "})
    assert no_reason.status == 400
    field = no_reason.one("#reject-reason")
    assert field["aria-invalid"] == "true"
    assert no_reason.texts(f"#{field['aria-describedby']}") == ["say why the post is rejected"]

    rejected = await browser.post(f"/posts/{post.id}/reject", {"reason": "Too early"})
    assert rejected.path == f"/posts/{post.id}?done=rejected"
    assert rejected.texts("[data-fact=approval]") == ["Rejected: Too early"]
    assert (await tenant.client.get_post(post.id)).status == posts_pb2.POST_STATUS_REJECTED

    approved = await browser.post(f"/posts/{post.id}/approve")
    assert approved.path == f"/posts/{post.id}?done=approved"
    after = await tenant.client.get_post(post.id)
    assert after.status == posts_pb2.POST_STATUS_SCHEDULED
    assert approved.texts("[data-fact=approval]")[0].startswith("Approved")
    assert not approved.all("form[data-action=approve]")


async def test_a_platform_url_that_is_no_web_address_is_not_a_link(
    browser: Browser, tenant: Tenant, console_api: RunningApi
) -> None:
    post = await create(tenant, schedule=schedule_after(timedelta()))
    [target] = post.targets
    await publish_as_the_publisher_would(
        console_api,
        post,
        {
            target.id: dispatch_pb2.AttemptOutcome(
                published=dispatch_pb2.Published(platform_post_id="1", url="javascript:alert(1)")
            )
        },
    )
    page = await browser.get(f"/posts/{post.id}")
    assert page.one(f"tr[data-target-id='{target.id}']")["data-target-status"] == "published"
    shown = page.one("[data-platform-url]")
    assert shown.name == "span"
    assert shown.get_text() == "javascript:alert(1)"
    assert not page.all("a[href^=javascript]")

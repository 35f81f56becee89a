"""The Composer (`/compose`): what the user sees on the form, what the api then holds, and the
api's refusals shown beside the fields they concern."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from integration.api.helpers_posts import NEXT_YEAR, next_transition

from kairos.posts.v1 import posts_pb2
from kairos_client import KairosError, schedule_local
from support.console import Browser, Page
from support.media import write_image

from .conftest import Tenant

BERLIN = "Europe/Berlin"


async def connect(
    tenant: Tenant, platform: posts_pb2.Platform.ValueType, handle: str
) -> posts_pb2.Account:
    """Another account of the tenant (Mastodon: 500 characters, sent the media's bytes)."""
    return await tenant.client.connect_account(
        posts_pb2.ConnectAccountRequest(
            platform=platform,
            handle=handle,
            credentials=posts_pb2.Credentials(
                access_token="t",
                instance_url="https://mastodon.example"
                if platform == posts_pb2.PLATFORM_MASTODON
                else "http://127.0.0.1:9",
            ),
        )
    )


def form_of(page: Page) -> list[tuple[str, str]]:
    """The compose form's hidden fields as the page drew them (its request_id, kept media)."""
    return [
        (str(field["name"]), str(field.get("value", "")))
        for field in page.all("#compose-form input[type=hidden]")
        if field["name"] != "csrf_token"
    ] + [
        (str(box["name"]), str(box["value"]))
        for box in page.all("#compose-form input[name=media_id][checked]")
    ]


async def send(
    browser: Browser,
    page: Page,
    fields: Sequence[tuple[str, str]],
    files: Sequence[Path] = (),
) -> Page:
    """Send the compose form of `page` with `fields` (and `files` in its file input)."""
    data = aiohttp.FormData([*form_of(page), *fields])
    for path in files:
        data.add_field("media", path.read_bytes(), filename=path.name, content_type="image/png")
    return await browser.post("/compose", data)


def error_of(page: Page, control: str) -> str:
    """The message beside a control, checking the control points at it."""
    element = page.one(f"#{control}")
    assert element["aria-invalid"] == "true", element
    described = str(element["aria-describedby"]).split()[0]
    return " ".join(page.texts(f"#{described}"))


def post_id_of(page: Page) -> str:
    assert page.path.startswith("/posts/"), page.text
    return page.path.removeprefix("/posts/").split("?")[0]


async def test_a_post_to_two_accounts_in_berlin_time_with_its_own_text_on_one(
    browser: Browser, tenant: Tenant
) -> None:
    second = await connect(tenant, posts_pb2.PLATFORM_SANDBOX, "@second")
    page = await browser.get("/compose")
    assert page.status == 200
    for account in (tenant.account, second):
        label = page.one(f"label[for=target-{account.id}]")
        assert account.handle in label.get_text()
        # The counter waits for the lead's ValidatePost wiring: empty, one per account.
        assert page.one(f"output[data-count-for='{account.id}']").get_text() == ""
    assert page.one("#time-zone")["value"] == BERLIN
    assert page.one("#when-draft").has_attr("checked")

    done = await send(
        browser,
        page,
        [
            ("content", "Hello from the console"),
            ("target", tenant.account.id),
            ("target", second.id),
            (f"override.{second.id}", "Only on the second"),
            ("when", "at"),
            ("date_time", f"{NEXT_YEAR}-07-01T09:30"),
            ("time_zone", BERLIN),
            ("campaign", "launch"),
            ("tags", "news, console"),
        ],
    )
    assert done.status == 200
    assert done.path.endswith("?done=scheduled")
    assert done.texts("[role=status]") == ["The post is scheduled."]
    post = await tenant.client.get_post(post_id_of(done))
    assert post.status == posts_pb2.POST_STATUS_SCHEDULED
    # 09:30 in Berlin in July is summer time, UTC+2.
    assert post.scheduled_at.ToDatetime(tzinfo=UTC) == datetime(NEXT_YEAR, 7, 1, 7, 30, tzinfo=UTC)
    assert post.time_zone == BERLIN
    assert post.campaign == "launch"
    assert list(post.tags) == ["news", "console"]
    by_account = {target.account_id: target for target in post.targets}
    assert set(by_account) == {tenant.account.id, second.id}
    assert not by_account[tenant.account.id].HasField("content_override")
    assert by_account[second.id].content_override == "Only on the second"
    # The detail page shows the time as entered, in the session's zone.
    assert done.one("[data-fact=schedule] time").get_text() == f"{NEXT_YEAR}-07-01 09:30"


async def test_a_time_the_clocks_skip_is_the_apis_message_beside_the_time(
    browser: Browser, tenant: Tenant
) -> None:
    gap = next_transition(BERLIN, forward=True).midway[:16]
    with pytest.raises(KairosError) as direct:
        await tenant.client.create_post(
            posts_pb2.CreatePostRequest(
                content="x",
                targets=[posts_pb2.TargetSpec(account_id=tenant.account.id)],
                schedule=schedule_local(gap, BERLIN),
            )
        )
    [(field, message)] = direct.value.violations
    assert field == "schedule.local.date_time"

    page = await browser.get("/compose")
    refused = await send(
        browser,
        page,
        [
            ("content", "Typed with care\nover two lines"),
            ("target", tenant.account.id),
            ("when", "at"),
            ("date_time", gap),
            ("time_zone", BERLIN),
        ],
    )
    assert refused.status == 400
    assert error_of(refused, "date-time") == message
    assert message in refused.texts("#form-errors li")
    # What the user typed is all still there.
    assert refused.one("#content").get_text() == "Typed with care\nover two lines"
    assert refused.one("#date-time")["value"] == gap
    assert refused.one("#when-at").has_attr("checked")
    assert refused.one(f"#target-{tenant.account.id}").has_attr("checked")
    assert (
        refused.one("input[name=request_id]")["value"]
        == page.one("input[name=request_id]")["value"]
    )
    assert not (await tenant.client.list_posts()).posts


async def test_text_too_long_for_a_platform_is_refused_beside_the_text_or_the_targets_own(
    browser: Browser, tenant: Tenant
) -> None:
    mastodon = await connect(tenant, posts_pb2.PLATFORM_MASTODON, "@kairos@mastodon.example")
    page = await browser.get("/compose")
    long_text = "x" * 501
    refused = await send(browser, page, [("content", long_text), ("target", mastodon.id)])
    assert refused.status == 400
    assert "500" in error_of(refused, "content")
    assert "Mastodon" in error_of(refused, "content")
    assert refused.one("#content").get_text() == long_text

    on_target = await send(
        browser,
        refused,
        [
            ("content", "short"),
            ("target", tenant.account.id),
            ("target", mastodon.id),
            (f"override.{mastodon.id}", long_text),
        ],
    )
    assert on_target.status == 400
    assert "500" in error_of(on_target, f"override-{mastodon.id}")
    assert on_target.one("#content").get("aria-invalid") is None
    assert on_target.one(f"#override-{mastodon.id}").get_text() == long_text
    assert not (await tenant.client.list_posts()).posts


async def test_no_target_is_refused_beside_the_targets(browser: Browser, tenant: Tenant) -> None:
    page = await browser.get("/compose")
    refused = await send(browser, page, [("content", "to nowhere")])
    assert refused.status == 400
    assert refused.one("#targets")["aria-describedby"] == "targets-error"
    assert refused.texts("#targets-error") == ["at least one target is required"]


async def test_a_form_sent_twice_makes_one_post(browser: Browser, tenant: Tenant) -> None:
    page = await browser.get("/compose")
    fields = [("content", "Only once"), ("target", tenant.account.id), ("when", "now")]
    # Sent twice at once, as a double click does; then once more, as a reload does.
    first, again = await asyncio.gather(send(browser, page, fields), send(browser, page, fields))
    reloaded = await send(browser, page, fields)
    assert first.path.endswith("?done=published-now")
    assert post_id_of(reloaded) == post_id_of(first)
    assert post_id_of(first) == post_id_of(again)
    assert len((await tenant.client.list_posts()).posts) == 1


async def test_a_form_sent_twice_with_a_file_makes_one_post_with_one_upload(
    browser: Browser, tenant: Tenant, tmp_path: Path
) -> None:
    mastodon = await connect(tenant, posts_pb2.PLATFORM_MASTODON, "@kairos@mastodon.example")
    image = write_image(tmp_path / "cat.png", container="image2", codec="png", pixel_format="rgb24")
    page = await browser.get("/compose")
    fields = [("content", "With a picture"), ("target", mastodon.id)]
    first, again = await asyncio.gather(
        send(browser, page, fields, [image]), send(browser, page, fields, [image])
    )
    assert post_id_of(first) == post_id_of(again)
    post = await tenant.client.get_post(post_id_of(first))
    assert len(post.media_ids) == 1
    assert first.texts("[data-fact=media] li")[0].startswith("cat.png")
    assert len((await tenant.client.list_posts()).posts) == 1


async def test_media_a_platform_cannot_take_is_the_apis_message_beside_the_file_input(
    browser: Browser, tenant: Tenant, tmp_path: Path
) -> None:
    image = write_image(tmp_path / "dog.png", container="image2", codec="png", pixel_format="rgb24")
    page = await browser.get("/compose")
    refused = await send(
        browser, page, [("content", "Sandbox pulls by URL"), ("target", tenant.account.id)], [image]
    )
    assert refused.status == 400
    assert "pulls media by URL" in error_of(refused, "media")
    # The upload is kept: it is offered again without choosing the file again.
    [kept] = refused.all("#compose-form input[name=media_id]")
    assert kept.has_attr("checked")
    assert refused.one(f"label[for=media-{kept['value']}]").get_text() == "dog.png"
    assert not (await tenant.client.list_posts()).posts


async def test_a_thread_of_three_parts_is_three_posts_each_replying_to_the_one_before(
    browser: Browser, tenant: Tenant
) -> None:
    page = await browser.get("/compose")
    assert not page.all("textarea[name=part]")
    base = [("content", "Part one"), ("target", tenant.account.id), ("campaign", "thread")]
    with_part = await send(browser, page, [*base, ("action", "add-part")])
    assert with_part.status == 200
    assert with_part.one("label[for=part-2]").get_text() == "Reply part 2"
    assert with_part.one("#content").get_text() == "Part one"
    assert not (await tenant.client.list_posts()).posts

    done = await send(browser, with_part, [*base, ("part", "Part two"), ("part", "Part three")])
    assert done.path.startswith("/posts/")
    assert "done=created" in done.path
    first = await tenant.client.get_post(post_id_of(done))
    links = [str(a["href"]) for a in done.all("[data-fact=parts] a")]
    assert len(links) == 2
    second = await tenant.client.get_post(links[0].removeprefix("/posts/"))
    third = await tenant.client.get_post(links[1].removeprefix("/posts/"))
    assert [p.content for p in (first, second, third)] == ["Part one", "Part two", "Part three"]
    assert first.parent_post_id == ""
    assert second.parent_post_id == first.id
    assert third.parent_post_id == second.id
    for post in (first, second, third):
        assert [t.account_id for t in post.targets] == [tenant.account.id]
        assert post.campaign == "thread"
    assert len((await tenant.client.list_posts()).posts) == 3
    # Part two's page links back to part one.
    part_two = await browser.get(links[0])
    assert part_two.one("#parent-link")["href"] == f"/posts/{first.id}"


async def test_a_thread_with_a_refused_part_creates_none_of_it(
    browser: Browser, tenant: Tenant
) -> None:
    mastodon = await connect(tenant, posts_pb2.PLATFORM_MASTODON, "@kairos@mastodon.example")
    page = await browser.get("/compose")
    refused = await send(
        browser,
        page,
        [("content", "One"), ("target", mastodon.id), ("part", "Two"), ("part", "y" * 501)],
    )
    assert refused.status == 400
    assert "500" in error_of(refused, "part-3")
    assert refused.one("#part-2").get("aria-invalid") is None
    assert not (await tenant.client.list_posts()).posts


async def test_a_thread_that_stops_part_way_says_which_parts_were_created(
    browser: Browser, tenant: Tenant
) -> None:
    page = await browser.get("/compose")
    base = [("content", "One"), ("target", tenant.account.id), ("part", "Two")]
    done = await send(browser, page, [*base, ("part", "Three"), ("part", "Four")])
    assert done.status == 200
    # The same form again (its request_id) with part three changed: parts one and two are the
    # posts made already, and the api refuses part three's id for a different request.
    stopped = await send(browser, page, [*base, ("part", "Three, changed"), ("part", "Four")])
    assert stopped.status == 400
    assert stopped.texts("[data-created]") == [
        "Part 1 was created: One",
        "Part 2 was created: Two",
    ]
    assert stopped.texts("[data-refused]") == ["Part 3 was not created: the api refused it."]
    assert stopped.texts("[data-untried]") == ["Part 4 was not created."]
    assert "already used" in error_of(stopped, "part-3")
    assert len((await tenant.client.list_posts()).posts) == 4


async def test_an_unknown_zone_is_the_apis_message_beside_the_zone(
    browser: Browser, tenant: Tenant
) -> None:
    page = await browser.get("/compose")
    refused = await send(
        browser,
        page,
        [
            ("content", "x"),
            ("target", tenant.account.id),
            ("when", "at"),
            ("date_time", f"{NEXT_YEAR}-07-01T09:30"),
            ("time_zone", "Mars/Olympus"),
        ],
    )
    assert refused.status == 400
    assert "Mars/Olympus" in error_of(refused, "time-zone")
    assert refused.one("#time-zone")["value"] == "Mars/Olympus"


async def test_approval_required_is_sent(browser: Browser, tenant: Tenant) -> None:
    page = await browser.get("/compose")
    done = await send(
        browser,
        page,
        [("content", "Check me"), ("target", tenant.account.id), ("approval_required", "yes")],
    )
    post = await tenant.client.get_post(post_id_of(done))
    assert post.approval_required
    assert done.texts("[data-fact=approval]") == ["Waiting for approval"]


async def test_the_page_holds_no_inline_script_or_style(browser: Browser) -> None:
    page = await browser.get("/compose")
    assert not page.all("style")
    assert not page.all("[style]")
    assert all(script.get("src") for script in page.all("script"))
    labelled = {str(label["for"]) for label in page.all("label[for]")}
    for control in page.all("#compose-form input:not([type=hidden]), #compose-form textarea"):
        assert control["id"] in labelled, control


async def test_a_form_sent_again_with_other_content_gets_a_new_id_to_save_with(
    browser: Browser, tenant: Tenant
) -> None:
    page = await browser.get("/compose")
    done = await send(browser, page, [("content", "First"), ("target", tenant.account.id)])
    first = post_id_of(done)
    # The same form (Back, then edited): the api refuses its id for a different request.
    refused = await send(browser, page, [("content", "Second"), ("target", tenant.account.id)])
    assert refused.status == 400
    summary = refused.texts("#form-errors li")
    assert any("already used for a different request" in line for line in summary)
    assert any("save again to make a new post" in line for line in summary)
    assert refused.one("#content").get_text() == "Second"
    new_id = refused.one("input[name=request_id]")["value"]
    assert new_id != page.one("input[name=request_id]")["value"]

    saved = await send(browser, refused, [("content", "Second"), ("target", tenant.account.id)])
    assert post_id_of(saved) != first
    assert (await tenant.client.get_post(post_id_of(saved))).content == "Second"
    assert len((await tenant.client.list_posts()).posts) == 2


async def test_the_counters_count_as_the_api_counts_on_every_account_shown(
    browser: Browser, tenant: Tenant
) -> None:
    """X counts a URL as 23 and an emoji as 2; Mastodon a URL as 23 and an emoji as one
    grapheme; an account's own text is counted on that account alone."""
    x = await connect(tenant, posts_pb2.PLATFORM_X, "@kairos_x")
    mastodon = await connect(tenant, posts_pb2.PLATFORM_MASTODON, "@kairos@mastodon.example")
    page = await browser.get("/compose")
    assert page.one("#compose-form")["data-check"] == "/compose/check"
    shown = {str(o["data-count-for"]) for o in page.all("output[data-count-for]")}
    assert {x.id, mastodon.id, tenant.account.id} <= shown
    text = "Kairos 🎉 https://example.com/a/very/long/path/to/somewhere"  # 7 + 1 + 1 + URL
    checked = await browser.post(
        "/compose/check",
        [
            ("content", text),
            ("target", mastodon.id),  # ticked; the others only shown
            ("count_for", x.id),
            ("count_for", mastodon.id),
            ("count_for", tenant.account.id),
            (f"override.{tenant.account.id}", "own"),
        ],
        csrf=page.csrf,
    )
    assert checked.status == 200, checked.text
    counts = {t["account_id"]: t for t in json.loads(checked.text)["targets"]}
    assert (counts[x.id]["length"], counts[x.id]["max_length"]) == (7 + 2 + 1 + 23, 280)
    assert counts[x.id]["unit"] == "weighted characters"
    assert (counts[mastodon.id]["length"], counts[mastodon.id]["max_length"]) == (
        7 + 1 + 1 + 23,
        500,
    )
    assert counts[tenant.account.id]["length"] == 3
    # What the api itself says for the same post.
    direct = await tenant.client.validate_post(
        posts_pb2.CreatePostRequest(content=text, targets=[posts_pb2.TargetSpec(account_id=x.id)])
    )
    assert direct.targets[0].length == counts[x.id]["length"]
    # Sent without the page's token, it is refused like any form.
    refused = await browser.post("/compose/check", [("content", text)], csrf="")
    assert refused.status == 403

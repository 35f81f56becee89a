"""The Accounts pages: listing, connecting through the form, the api's refusals next to their
fields with no secret sent back, pause, resume, disconnect, new credentials, and another tenant's
account kept out of sight."""

from __future__ import annotations

from kairos.posts.v1 import posts_pb2
from support.api import RunningApi
from support.console import Browser, Page

from .conftest import Tenant, new_tenant

SECRET = "s3cret-token-that-must-never-come-back"


def described_by(page: Page, field_id: str) -> list[str]:
    """The texts of what a field's aria-describedby names."""
    field = page.one(f"#{field_id}")
    return [
        text
        for ref in str(field.get("aria-describedby", "")).split()
        for text in page.texts(f"#{ref}")
    ]


async def test_the_list_shows_the_tenants_accounts_with_their_state(
    browser: Browser, tenant: Tenant
) -> None:
    page = await browser.get("/accounts")
    assert page.status == 200
    row = page.one(f"tr[data-account-id='{tenant.account.id}']")
    assert row.select_one("a")["href"] == f"/accounts/{tenant.account.id}"  # type: ignore[index]
    assert " ".join(row.get_text(" ").split()).startswith("sandbox @console active")
    assert row.select_one("span.state-active") is not None


async def test_connecting_a_sandbox_and_a_mastodon_account_through_the_form(
    browser: Browser, tenant: Tenant
) -> None:
    form = await browser.get("/accounts")
    assert form.one("#cred-access-token")["type"] == "password"
    assert form.one("#cred-access-token")["autocomplete"] == "off"
    assert "Mastodon" in form.texts("#cred-instance-url-hint")[0]
    page = await browser.post(
        "/accounts",
        {
            "platform": "sandbox",
            "handle": "@second",
            "access_token": SECRET,
            "instance_url": "http://127.0.0.1:9",
        },
    )
    assert page.status == 200
    assert page.path == "/accounts?done=connected"
    assert page.texts(".notice") == ["The account is connected."]
    page = await browser.post(
        "/accounts",
        {
            "platform": "mastodon",
            "handle": "@kairos@mastodon.example",
            "access_token": SECRET,
            "instance_url": "https://mastodon.example",
            "extra_key_0": "client_id",
            "extra_value_0": "the-client",
        },
    )
    assert page.path == "/accounts?done=connected"
    assert SECRET not in page.text
    accounts = {a.handle: a for a in await tenant.client.list_accounts()}
    assert set(accounts) == {"@console", "@second", "@kairos@mastodon.example"}
    mastodon = accounts["@kairos@mastodon.example"]
    assert mastodon.platform == posts_pb2.PLATFORM_MASTODON
    assert mastodon.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    listed = page.texts("#accounts tbody tr td:nth-child(2)")
    assert listed == ["@console", "@second", "@kairos@mastodon.example"]
    assert page.one(f"tr[data-account-id='{mastodon.id}'] td:first-child").get_text() == "mastodon"


async def test_a_refused_connect_shows_each_violation_next_to_its_field_and_no_secret(
    browser: Browser, tenant: Tenant
) -> None:
    await browser.get("/accounts")
    page = await browser.post(
        "/accounts",
        {
            "platform": "mastodon",
            "handle": "@kept@mastodon.example",
            "access_token": SECRET,
            "refresh_token": SECRET + "-refresh",
            "instance_url": "http://mastodon.example",
            "extra_key_0": "",
            "extra_value_0": SECRET + "-extra",
        },
    )
    assert page.status == 400
    assert SECRET not in page.text
    assert page.one("#cred-instance-url")["aria-invalid"] == "true"
    assert "must use https" in described_by(page, "cred-instance-url")[0]
    assert page.one("#extra-key-0")["aria-invalid"] == "true"
    assert described_by(page, "extra-key-0")[0] == "keys must not be empty"
    # What was typed and is not secret is kept; every secret is empty, and the page says why.
    assert page.one("#account-handle")["value"] == "@kept@mastodon.example"
    assert page.one("#cred-instance-url")["value"] == "http://mastodon.example"
    assert page.one("#account-platform option[selected]")["value"] == "mastodon"
    for secret in page.all("input[type=password]"):
        assert not secret.get("value")
    summary = page.one("[role=alert]")
    assert "Instance URL" in summary.get_text()
    assert page.all("[data-retype-secrets]")
    assert page.one("#cred-access-token").get("aria-invalid") is None
    assert [a.handle for a in await tenant.client.list_accounts()] == ["@console"]


async def test_a_refused_value_typed_in_the_other_values_rows_is_said_beside_them(
    browser: Browser, tenant: Tenant
) -> None:
    await browser.get("/accounts")
    page = await browser.post(
        "/accounts",
        {
            "platform": "discord",
            "handle": "#news",
            "access_token": "https://discord.com/api/webhooks/1/abc",
            "extra_key_1": "webhook_url",
            "extra_value_1": "http://" + SECRET,
        },
    )
    assert page.status == 400
    assert SECRET not in page.text
    assert "must be the Discord webhook URL" in described_by(page, "extra-key-0")[0]
    assert page.one("#extra-key-1")["value"] == "webhook_url"
    assert page.one("#extra-value-1").get("value") is None
    assert "Other values: webhook_url" in page.one("[role=alert]").get_text()


async def test_a_missing_platform_or_handle_is_said_next_to_it(
    browser: Browser, tenant: Tenant
) -> None:
    await browser.get("/accounts")
    page = await browser.post("/accounts", {"platform": "", "handle": "@x"})
    assert page.status == 400
    assert described_by(page, "account-platform") == ["Choose a platform."]
    page = await browser.post("/accounts", {"platform": "x", "handle": " "})
    assert page.status == 400
    assert described_by(page, "account-handle")[0] == "is required"
    assert "is required for x" in described_by(page, "cred-access-token")[0]
    assert page.one("#account-platform option[selected]")["value"] == "x"


async def test_pause_resume_and_disconnect_change_what_the_api_reports(
    browser: Browser, tenant: Tenant
) -> None:
    path = f"/accounts/{tenant.account.id}"
    page = await browser.get(path)
    assert page.texts("#account-status") == ["active"]
    page = await browser.post(f"{path}/pause", {})
    assert page.path == f"{path}?done=paused"
    assert page.texts("#account-status") == ["paused"]
    account = await tenant.client.get_account(tenant.account.id)
    assert account.status == posts_pb2.ACCOUNT_STATUS_PAUSED
    assert page.all("#resume-account")
    assert not page.all("#pause-account")

    page = await browser.post(f"{path}/resume", {})
    assert page.path == f"{path}?done=resumed"
    account = await tenant.client.get_account(tenant.account.id)
    assert account.status == posts_pb2.ACCOUNT_STATUS_ACTIVE

    # Disconnecting asks first, on a page of its own; a post without the answer asks too.
    page = await browser.post(f"{path}/disconnect", {})
    assert page.path == f"{path}/disconnect"
    account = await tenant.client.get_account(tenant.account.id)
    assert account.status == posts_pb2.ACCOUNT_STATUS_ACTIVE
    assert page.one("#disconnect-form")["action"] == f"{path}/disconnect"
    assert page.all("#confirm-disconnect")
    page = await browser.post(f"{path}/disconnect", {"confirm": "yes"})
    assert page.path == f"{path}?done=disconnected"
    assert page.texts("#account-status") == ["disconnected"]
    assert not page.all("#credentials-form")
    assert not page.all("#account-actions")
    account = await tenant.client.get_account(tenant.account.id)
    assert account.status == posts_pb2.ACCOUNT_STATUS_DISCONNECTED

    # The account was disconnected meanwhile (another tab): the refusal is said on its page.
    page = await browser.post(f"{path}/pause", {})
    assert page.status == 409
    assert "disconnected" in page.one("[role=alert]").get_text()
    assert not page.all("[data-retype-secrets]")  # nothing secret was sent


async def test_new_credentials_are_sent_and_never_shown(browser: Browser, tenant: Tenant) -> None:
    path = f"/accounts/{tenant.account.id}"
    page = await browser.get(path)
    # Only what a sandbox account uses: no Webhook or Discord field.
    assert page.all("#cred-instance-url")
    assert not page.all("#cred-extra-url")
    assert page.texts("#cred-instance-url-hint") == ["Required: the sandbox endpoint URL."]
    page = await browser.post(
        f"{path}/credentials",
        {
            "access_token": SECRET,
            "instance_url": "http://127.0.0.1:10",
            "expires_at": "2030-01-02T03:04",
        },
    )
    assert page.path == f"{path}?done=credentials"
    assert SECRET not in page.text
    account = await tenant.client.get_account(tenant.account.id)
    # 03:04 in Berlin (the browser's zone) in winter is 02:04 UTC.
    assert account.token_expires_at.ToJsonString() == "2030-01-02T02:04:00Z"
    assert page.texts("#account dd time")[-1] == "2030-01-02 03:04"

    refused = await browser.post(
        f"{path}/credentials", {"access_token": SECRET, "instance_url": ""}
    )
    assert refused.status == 400
    assert SECRET not in refused.text
    assert "is required for sandbox" in described_by(refused, "cred-instance-url")[0]
    assert refused.all("[data-retype-secrets]")

    unreadable = await browser.post(
        f"{path}/credentials",
        {"access_token": SECRET, "instance_url": "http://127.0.0.1:10", "expires_at": "soon"},
    )
    assert unreadable.status == 400
    assert described_by(unreadable, "cred-expires-at")[0].startswith("must be a date and time")
    assert unreadable.one("#cred-expires-at")["value"] == "soon"
    assert SECRET not in unreadable.text
    # The last minute of year 9999 in Berlin is past what a timestamp holds in UTC.
    out_of_range = await browser.post(
        f"{path}/credentials",
        {
            "access_token": SECRET,
            "instance_url": "http://127.0.0.1:10",
            "expires_at": "0001-01-01T00:30",
        },
    )
    assert out_of_range.status == 400
    assert described_by(out_of_range, "cred-expires-at")[0].startswith("must be a date and time")


async def test_another_tenants_account_is_not_found(
    console_api: RunningApi, browser: Browser, tenant: Tenant
) -> None:
    async with new_tenant(console_api, "@theirs") as them:
        other_client, theirs = them.client, them.account
        path = f"/accounts/{theirs.id}"
        assert (await browser.get(path)).status == 404
        assert (await browser.get(f"{path}/disconnect")).status == 404
        await browser.get("/accounts")
        assert (await browser.post(f"{path}/pause", {})).status == 404
        assert (await browser.post(f"{path}/disconnect", {"confirm": "yes"})).status == 404
        assert (await other_client.get_account(theirs.id)).status == (
            posts_pb2.ACCOUNT_STATUS_ACTIVE
        )
    assert (await browser.get("/accounts/not-an-id")).status == 404

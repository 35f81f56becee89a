"""`kairos webhooks ...` against the in-process api (PostgreSQL and SQLite): register an endpoint
(its secret printed once), list, show, change, rotate, read the delivery log with its tries,
redeliver, delete. Deliveries are recorded and tried through the api's own handlers, as the
publisher would through WebhookDispatchService."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

from integration.cli.conftest import Kairos

from kairos.events.v1 import events_pb2
from kairos_api.service_layer import webhooks


async def record_one(kairos: Kairos) -> str:
    """One published event for the tenant's endpoints, recorded as the publisher would; its id."""
    event = events_pb2.LifecycleEvent(
        event_id=str(uuid.uuid4()),
        type=events_pb2.LIFECYCLE_EVENT_TYPE_PUBLISHED,
        tenant_id=kairos.tenant,
        post_id=str(uuid.uuid4()),
    )
    event.occurred_at.FromDatetime(datetime(2030, 1, 7, 9, 0))
    recorded, due = await webhooks.record_events(kairos.api.service.app, [event])
    assert recorded == 1
    assert due is not None
    return event.event_id


async def test_register_list_show_change_rotate_and_delete(kairos: Kairos) -> None:
    created = await kairos.ok(
        "webhooks",
        "create",
        "https://hooks.example.com/in",
        "--event",
        "published",
        "--event",
        "needs_reauth",
        "--description",
        "ops",
    )
    webhook_id, secret_line = created.stdout.splitlines()
    assert secret_line.startswith("secret: whsec_")
    secret = secret_line.removeprefix("secret: ")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert "shown only now" in created.stderr

    listed = (await kairos.ok("--json", "webhooks", "list")).json()
    assert [w["webhook_id"] for w in listed["webhooks"]] == [webhook_id]
    shown = (await kairos.ok("--json", "webhooks", "show", webhook_id)).json()
    assert shown["url"] == "https://hooks.example.com/in"
    assert shown["events"] == ["published", "needs_reauth"]
    assert (shown["status"], shown["description"]) == ("enabled", "ops")
    assert shown["secret_hint"] == secret[:10]
    table = await kairos.ok("webhooks", "show", webhook_id)
    assert "published, needs_reauth" in table.stdout

    changed = (
        await kairos.ok(
            "--json",
            "webhooks",
            "update",
            webhook_id,
            "--url",
            "https://other.example.com/x",
            "--all-events",
            "--disable",
        )
    ).json()
    assert (changed["url"], changed["events"], changed["status"]) == (
        "https://other.example.com/x",
        [],
        "disabled",
    )
    assert changed["disabled_reason"] == "disabled by its owner"
    enabled = (await kairos.ok("--json", "webhooks", "update", webhook_id, "--enable")).json()
    assert (enabled["status"], enabled["disabled_reason"]) == ("enabled", "")

    rotated = (await kairos.ok("--json", "webhooks", "rotate-secret", webhook_id)).json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != secret
    assert rotated["webhook"]["secret_hint"] == rotated["secret"][:10]

    deleted = await kairos.ok("webhooks", "delete", webhook_id)
    assert deleted.stdout == f"webhook {webhook_id} deleted\n"
    gone = await kairos("webhooks", "show", webhook_id)
    assert gone.code == 4
    assert f"webhook {webhook_id} not found" in gone.stderr


async def test_the_delivery_log_and_redelivery(kairos: Kairos) -> None:
    webhook_id = (await kairos.ok("webhooks", "create", "https://hooks.example.com/in")).stdout
    webhook_id = webhook_id.splitlines()[0]
    event_id = await record_one(kairos)
    [delivery] = (await kairos.ok("--json", "webhooks", "deliveries", webhook_id)).json()[
        "deliveries"
    ]
    assert (delivery["event_id"], delivery["event_type"], delivery["status"]) == (
        event_id,
        "published",
        "pending",
    )
    # The publisher tries it: HTTP 500, then 200.
    app = kairos.api.service.app
    delivery_id = uuid.UUID(delivery["delivery_id"])
    for number, status in ((1, 500), (2, 200)):
        await webhooks.complete_deliveries(
            app,
            [
                webhooks.TryResult(
                    delivery_id=delivery_id,
                    attempt_number=number,
                    http_status=status,
                    error="HTTP 500" if status == 500 else "",
                    latency_ms=35,
                    response_excerpt="",
                    attempted_at=datetime.now(UTC),
                )
            ],
        )
    table = await kairos.ok("webhooks", "deliveries", webhook_id)
    assert "1: 500, 35 ms; 2: 200, 35 ms" in table.stdout
    assert "delivered" in table.stdout
    delivered = (
        await kairos.ok("--json", "webhooks", "deliveries", webhook_id, "--status", "delivered")
    ).json()["deliveries"]
    assert [d["delivery_id"] for d in delivered] == [str(delivery_id)]
    assert [(a["number"], a["http_status"]) for a in delivered[0]["attempts"]] == [
        (1, 500),
        (2, 200),
    ]
    none_failed = await kairos.ok(
        "--json", "webhooks", "deliveries", webhook_id, "--status", "failed"
    )
    assert none_failed.json() == {"deliveries": []}

    again = (await kairos.ok("--json", "webhooks", "redeliver", str(delivery_id))).json()
    assert again["status"] == "pending"
    refused = await kairos("webhooks", "redeliver", str(delivery_id))
    assert refused.code == 5
    assert "is still pending" in refused.stderr


async def test_mistakes_are_usage_errors(kairos: Kairos) -> None:
    bad_event = await kairos("webhooks", "create", "https://h.example.com/", "--event", "nope")
    assert bad_event.code == 2
    assert "--event takes one of created, updated" in bad_event.stderr
    nothing = await kairos("webhooks", "update", str(uuid.uuid4()))
    assert nothing.code == 2
    assert "nothing to change" in nothing.stderr
    http = await kairos("webhooks", "create", "http://h.example.com/")
    assert http.code == 2
    assert "url: must use https; http is allowed only in development" in http.stderr
    bad_status = await kairos("webhooks", "deliveries", str(uuid.uuid4()), "--status", "lost")
    assert bad_status.code == 2
    assert "--status takes one of pending, delivered, failed, got 'lost'" in bad_status.stderr

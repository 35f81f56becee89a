"""`kairos webhooks`: register endpoints that are sent the tenant's lifecycle events, and read
their delivery log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from kairos.events.v1 import events_pb2
from kairos.posts.v1 import webhooks_pb2
from kairos_cli import names
from kairos_cli.runtime import (
    EXIT_USAGE,
    call_api,
    console,
    fail,
    hint,
    message_dict,
    options,
    print_json,
    say,
)
from kairos_cli.tables import Column, FitTable
from kairos_cli.when import show

app = typer.Typer(
    help="Register endpoints that are POSTed the tenant's events (signed), and read what was "
    "sent to them."
)

WebhookId = Annotated[str, typer.Argument(metavar="ID", help="The webhook id.")]
EVENT_PREFIX = "LIFECYCLE_EVENT_TYPE_"
#: Event types by the names the command line takes: published, failed, needs_reauth ...
EVENTS: dict[str, events_pb2.LifecycleEventType.ValueType] = {
    value.name.removeprefix(EVENT_PREFIX).lower(): events_pb2.LifecycleEventType.ValueType(
        value.number
    )
    for value in events_pb2.LifecycleEventType.DESCRIPTOR.values
    if value.number != 0
}
DELIVERY_STATUSES = {
    "pending": webhooks_pb2.WEBHOOK_DELIVERY_STATUS_PENDING,
    "delivered": webhooks_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED,
    "failed": webhooks_pb2.WEBHOOK_DELIVERY_STATUS_FAILED,
}
EventOption = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        metavar="EVENT",
        help="Send only this event type (repeat for more): " + ", ".join(EVENTS) + ".",
    ),
]
SECRET_NOTE = "keep the secret: it is shown only now, and receivers verify signatures with it"


def event_types(given: Sequence[str]) -> list[events_pb2.LifecycleEventType.ValueType]:
    found = []
    for name in given:
        value = EVENTS.get(name.strip().lower())
        if value is None:
            fail(EXIT_USAGE, f"--event takes one of {', '.join(EVENTS)}, got {name!r}")
        found.append(value)
    return found


def event_label(value: int) -> str:
    return names.enum_label(events_pb2.LifecycleEventType.DESCRIPTOR, value)


def status_label(webhook: webhooks_pb2.Webhook) -> str:
    return names.enum_label(webhooks_pb2.WebhookStatus.DESCRIPTOR, webhook.status)


def _events_text(webhook: webhooks_pb2.Webhook) -> str:
    return ", ".join(event_label(e) for e in webhook.events) or "all"


def webhooks_table(found: Sequence[webhooks_pb2.Webhook], zone: ZoneInfo) -> FitTable:
    table = FitTable(
        [
            Column("ID", key=True),
            Column("URL", under=20),
            Column("EVENTS", under=12),
            Column("STATUS"),
            Column("SECRET"),
            Column("CREATED"),
        ],
        caption="" if found else "no webhooks",
    )
    for webhook in found:
        table.add_row(
            webhook.webhook_id,
            webhook.url,
            _events_text(webhook),
            status_label(webhook),
            webhook.secret_hint + "...",
            show(webhook.created_at, zone),
        )
    return table


def webhook_detail(webhook: webhooks_pb2.Webhook, zone: ZoneInfo) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("id", webhook.webhook_id),
        ("url", webhook.url),
        ("events", _events_text(webhook)),
        ("status", status_label(webhook)),
    ]
    if webhook.disabled_reason:
        rows.append(("why", webhook.disabled_reason))
    if webhook.HasField("failing_since"):
        rows.append(("failing since", show(webhook.failing_since, zone)))
    rows += [
        ("description", webhook.description or "-"),
        ("secret", webhook.secret_hint + "..."),
        ("created", show(webhook.created_at, zone)),
        ("updated", show(webhook.updated_at, zone)),
    ]
    for label, value in rows:
        table.add_row(label, value)
    return table


def _attempts_text(delivery: webhooks_pb2.WebhookDelivery) -> str:
    parts = []
    for attempt in delivery.attempts:
        answer = str(attempt.http_status) if attempt.http_status else "no answer"
        if attempt.error and attempt.error != f"HTTP {attempt.http_status}":
            answer += f" ({attempt.error})"
        millis = attempt.latency.ToMilliseconds()
        parts.append(f"{attempt.number}: {answer}, {millis} ms")
    return "; ".join(parts) or "-"


def deliveries_table(
    deliveries: Sequence[webhooks_pb2.WebhookDelivery], zone: ZoneInfo
) -> FitTable:
    table = FitTable(
        [
            Column("DELIVERY", key=True),
            Column("EVENT"),
            Column("TYPE"),
            Column("STATUS"),
            Column("TRIES", under=20),
            Column("NEXT / DELIVERED"),
        ],
        caption="" if deliveries else "no deliveries",
    )
    for delivery in deliveries:
        when = (
            delivery.delivered_at
            if delivery.HasField("delivered_at")
            else delivery.next_attempt_at
            if delivery.HasField("next_attempt_at")
            else None
        )
        table.add_row(
            delivery.delivery_id,
            delivery.event_id,
            event_label(delivery.event_type),
            names.enum_label(webhooks_pb2.WebhookDeliveryStatus.DESCRIPTOR, delivery.status),
            _attempts_text(delivery),
            show(when, zone),
        )
    return table


def _print_created(webhook: webhooks_pb2.Webhook, secret: str, as_json: bool) -> None:
    if as_json:
        print_json({"webhook": message_dict(webhook), "secret": secret})
        return
    say(webhook.webhook_id)
    say(f"secret: {secret}")
    hint(SECRET_NOTE)


@app.command("create")
def create(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(metavar="URL", help="Where to POST events (https).")],
    event: EventOption = None,
    description: Annotated[
        str, typer.Option("--description", metavar="TEXT", help="A note for people.")
    ] = "",
) -> None:
    """Register an endpoint; prints its id and its signing secret, which is shown only now."""
    events = event_types(event or [])
    opts = options(ctx)
    created = call_api(ctx, lambda client: client.create_webhook(url, events, description))
    _print_created(created.webhook, created.secret, opts.json)


@app.command("list")
def list_webhooks(ctx: typer.Context) -> None:
    """List the tenant's endpoints, newest first."""
    opts = options(ctx)
    found = call_api(ctx, lambda client: client.list_webhooks(page_size=200))
    if opts.json:
        print_json({"webhooks": [message_dict(w) for w in found.webhooks]})
    else:
        console().print(webhooks_table(found.webhooks, opts.zone))


@app.command("show")
def show_webhook(ctx: typer.Context, webhook_id: WebhookId) -> None:
    """Show one endpoint: URL, events, status (and why it is disabled), secret hint."""
    opts = options(ctx)
    webhook = call_api(ctx, lambda client: client.get_webhook(webhook_id))
    if opts.json:
        print_json(webhook)
    else:
        console().print(webhook_detail(webhook, opts.zone))


@app.command("update")
def update(
    ctx: typer.Context,
    webhook_id: WebhookId,
    url: Annotated[str | None, typer.Option("--url", metavar="URL", help="A new URL.")] = None,
    event: EventOption = None,
    all_events: Annotated[
        bool, typer.Option("--all-events", help="Send every event type (drop the filter).")
    ] = False,
    description: Annotated[
        str | None, typer.Option("--description", metavar="TEXT", help="A new note.")
    ] = None,
    enable: Annotated[
        bool, typer.Option("--enable", help="Send events to it again (clears its failures).")
    ] = False,
    disable: Annotated[bool, typer.Option("--disable", help="Send it nothing.")] = False,
) -> None:
    """Change an endpoint's URL, events or description, or enable or disable it."""
    if event and all_events:
        fail(EXIT_USAGE, "give --event or --all-events, not both")
    if enable and disable:
        fail(EXIT_USAGE, "give --enable or --disable, not both")
    changes = webhooks_pb2.Webhook()
    paths: list[str] = []
    if url is not None:
        changes.url = url
        paths.append("url")
    if event or all_events:
        changes.events.extend(event_types(event or []))
        paths.append("events")
    if description is not None:
        changes.description = description
        paths.append("description")
    if enable or disable:
        changes.status = (
            webhooks_pb2.WEBHOOK_STATUS_ENABLED if enable else webhooks_pb2.WEBHOOK_STATUS_DISABLED
        )
        paths.append("status")
    if not paths:
        fail(
            EXIT_USAGE,
            "nothing to change: give --url, --event, --all-events, --description, --enable "
            "or --disable",
        )
    opts = options(ctx)
    webhook = call_api(ctx, lambda client: client.update_webhook(webhook_id, changes, paths))
    if opts.json:
        print_json(webhook)
    else:
        console().print(webhook_detail(webhook, opts.zone))


@app.command("delete")
def delete(ctx: typer.Context, webhook_id: WebhookId) -> None:
    """Remove an endpoint; deliveries not yet made are dropped."""
    call_api(ctx, lambda client: client.delete_webhook(webhook_id))
    say(f"webhook {webhook_id} deleted")


@app.command("rotate-secret")
def rotate_secret(ctx: typer.Context, webhook_id: WebhookId) -> None:
    """Give an endpoint a new signing secret (printed once); the old one stops at once."""
    opts = options(ctx)
    rotated = call_api(ctx, lambda client: client.rotate_webhook_secret(webhook_id))
    _print_created(rotated.webhook, rotated.secret, opts.json)


@app.command("deliveries")
def deliveries(
    ctx: typer.Context,
    webhook_id: WebhookId,
    status: Annotated[
        str | None,
        typer.Option("--status", metavar="STATUS", help="Only pending, delivered or failed."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=200, help="At most this many, newest first.")
    ] = 50,
) -> None:
    """The delivery log of an endpoint, newest first, with every try."""
    wanted = webhooks_pb2.WEBHOOK_DELIVERY_STATUS_UNSPECIFIED
    if status is not None:
        if status.lower() not in DELIVERY_STATUSES:
            fail(
                EXIT_USAGE, f"--status takes one of {', '.join(DELIVERY_STATUSES)}, got {status!r}"
            )
        wanted = DELIVERY_STATUSES[status.lower()]
    opts = options(ctx)
    found = call_api(
        ctx, lambda client: client.list_webhook_deliveries(webhook_id, wanted, page_size=limit)
    )
    if opts.json:
        print_json({"deliveries": [message_dict(d) for d in found.deliveries]})
    else:
        console().print(deliveries_table(found.deliveries, opts.zone))


@app.command("redeliver")
def redeliver(
    ctx: typer.Context,
    delivery_id: Annotated[str, typer.Argument(metavar="DELIVERY_ID", help="The delivery id.")],
) -> None:
    """Send a delivered or failed delivery again, now."""
    opts = options(ctx)
    delivery = call_api(ctx, lambda client: client.redeliver_webhook(delivery_id))
    if opts.json:
        print_json(delivery)
    else:
        console().print(deliveries_table([delivery], opts.zone))

"""Webhook signatures as Standard Webhooks defines them, checked by the `standardwebhooks` library
(not by Kairos's code), and the webhook settings."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import secrets
import time
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from kairos.dispatch.v1 import webhooks_pb2
from kairos_common.settings import SettingsError
from kairos_publisher.settings import PublisherSettings, WebhookSettings
from kairos_publisher.webhooks import USER_AGENT, retry_delay, signature, signed_headers

BASE_ENV = {"KAIROS_ENV": "development"}


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def a_send(
    secret: str, body: bytes = b'{"type":"post.published","data":{}}'
) -> webhooks_pb2.WebhookSend:
    return webhooks_pb2.WebhookSend(
        delivery_id="d-1",
        webhook_id="w-1",
        url="https://hooks.example.com/in",
        secret=secret,
        message_id="evt_7f1c",
        body=body,
        attempt_number=1,
    )


def test_the_signed_headers_verify_with_the_standardwebhooks_library() -> None:
    secret = new_secret()
    send = a_send(secret)
    headers = signed_headers(send, int(time.time()))
    assert Webhook(secret).verify(send.body, headers) == {"type": "post.published", "data": {}}
    assert headers["webhook-id"] == "evt_7f1c"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", headers["webhook-signature"])


def test_a_tampered_body_does_not_verify() -> None:
    secret = new_secret()
    send = a_send(secret, b'{"amount":1}')
    headers = signed_headers(send, int(time.time()))
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(b'{"amount":2}', headers)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp"])
def test_a_changed_id_or_timestamp_does_not_verify(header: str) -> None:
    secret = new_secret()
    send = a_send(secret)
    now = int(time.time())
    headers = signed_headers(send, now)
    headers[header] = "evt_other" if header == "webhook-id" else str(now - 1)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(send.body, headers)


def test_another_secret_does_not_verify() -> None:
    send = a_send(new_secret())
    headers = signed_headers(send, int(time.time()))
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(new_secret()).verify(send.body, headers)


def test_the_specifications_example_signature() -> None:
    # The example in the Standard Webhooks specification's test vectors.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_a_secret_without_padding_signs_as_the_padded_one() -> None:
    padded = new_secret()
    assert padded.endswith("=")
    body = json.dumps({"a": 1}).encode()
    assert signature(padded.rstrip("="), "m", 1, body) == signature(padded, "m", 1, body)


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_a"])
def test_a_secret_that_is_not_base64_is_a_value_error(secret: str) -> None:
    with pytest.raises(ValueError, match="the endpoint's secret is not whsec_ and base64"):
        signature(secret, "m", 1, b"{}")


def test_events_the_api_could_not_take_come_back_later_and_later() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4, 5, 6, 7, 50)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_webhook_settings_defaults() -> None:
    settings = PublisherSettings.from_env(BASE_ENV).webhooks
    assert settings == WebhookSettings()
    assert (settings.enabled, settings.concurrency, settings.allowed_networks) == (True, 32, ())
    assert (settings.timeout, settings.lease, settings.poll) == (
        timedelta(seconds=10),
        timedelta(seconds=60),
        timedelta(seconds=2),
    )


def test_webhook_settings_from_the_environment() -> None:
    settings = PublisherSettings.from_env(
        {
            **BASE_ENV,
            "KAIROS_WEBHOOKS_ENABLED": "false",
            "KAIROS_WEBHOOK_CONCURRENCY": "5",
            "KAIROS_WEBHOOK_TIMEOUT_SECONDS": "2.5",
            "KAIROS_WEBHOOK_LEASE_SECONDS": "5",
            "KAIROS_WEBHOOK_POLL_SECONDS": "0.5",
            "KAIROS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128",
        }
    ).webhooks
    assert settings == WebhookSettings(
        enabled=False,
        concurrency=5,
        timeout=timedelta(seconds=2.5),
        lease=timedelta(seconds=5),
        poll=timedelta(seconds=0.5),
        allowed_networks=(
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
        ),
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"KAIROS_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8, intranet"},
            "KAIROS_WEBHOOK_ALLOWED_NETWORKS: 'intranet' is not a network (CIDR)",
        ),
        (
            {"KAIROS_WEBHOOK_TIMEOUT_SECONDS": "40"},
            "KAIROS_WEBHOOK_LEASE_SECONDS=60 must be at least twice "
            "KAIROS_WEBHOOK_TIMEOUT_SECONDS=40",
        ),
        ({"KAIROS_WEBHOOK_CONCURRENCY": "0"}, "KAIROS_WEBHOOK_CONCURRENCY"),
        ({"KAIROS_WEBHOOKS_ENABLED": "maybe"}, "KAIROS_WEBHOOKS_ENABLED='maybe' is not a boolean"),
    ],
)
def test_bad_webhook_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        PublisherSettings.from_env({**BASE_ENV, **env})
    assert str(caught.value).startswith(message)

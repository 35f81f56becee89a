"""Error statuses stay inside gRPC's 8 KiB header limit whatever the client sent."""

from __future__ import annotations

import base64

import pytest
from google.rpc import error_details_pb2, status_pb2

from kairos_common import errors
from kairos_common.grpc.errors import to_rich_status

SOFT_LIMIT = 8 * 1024
WORST = {
    "ascii": "x",
    "percent": "%",
    "two-byte": "é",
    "three-byte": "€",
    "emoji": "🙂",
    "control": "\x01",
}


def percent_encoded(message: str) -> bytes:
    """`grpc-message` as the gRPC HTTP/2 spec sends it."""
    out = bytearray()
    for byte in message.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += f"%{byte:02X}".encode()
    return bytes(out)


def header_bytes(status: object) -> int:
    metadata = dict(status.trailing_metadata)  # type: ignore[attr-defined]
    details = base64.b64encode(metadata["grpc-status-details-bin"])
    return len(percent_encoded(status.details)) + len(details)  # type: ignore[attr-defined]


@pytest.mark.parametrize("char", list(WORST.values()), ids=list(WORST))
def test_a_long_message_is_clipped_by_its_encoded_size(char: str) -> None:
    status = to_rich_status(errors.FailedPrecondition(char * 5000))
    assert status.details.endswith("…")
    assert len(percent_encoded(status.details)) <= 1_000
    assert status.details[:-1] == char * (len(status.details) - 1)


def test_a_short_message_is_untouched() -> None:
    assert to_rich_status(errors.NotFound("post é not found")).details == "post é not found"


@pytest.mark.parametrize("char", list(WORST.values()), ids=list(WORST))
def test_many_long_violations_fit_the_soft_limit(char: str) -> None:
    error = errors.InvalidArgument(
        char * 5000,
        [errors.FieldViolation(char * 1000, char * 5000) for _ in range(500)],
    )
    status = to_rich_status(error)
    assert header_bytes(status) < SOFT_LIMIT - 500
    detail = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    bad_request = error_details_pb2.BadRequest()
    assert detail.details[0].Unpack(bad_request)
    shown = bad_request.field_violations
    assert 1 < len(shown) <= 20
    # Only real fields are listed; the message counts the ones left out.
    assert all(v.field.startswith(char) for v in shown)
    assert detail.message.endswith(f" (and {500 - len(shown)} more violations not listed)")


def test_a_few_violations_are_all_shown() -> None:
    error = errors.InvalidArgument(
        "bad", [errors.FieldViolation(f"targets[{i}]", "unknown account") for i in range(3)]
    )
    detail = status_pb2.Status.FromString(
        dict(to_rich_status(error).trailing_metadata)["grpc-status-details-bin"]
    )
    bad_request = error_details_pb2.BadRequest()
    detail.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == [f"targets[{i}]" for i in range(3)]

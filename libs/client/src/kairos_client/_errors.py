"""`KairosError`: a failed call's status code, message and field violations, decoded once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import grpc
from google.rpc import error_details_pb2, status_pb2

#: Trailing-metadata key of the `google.rpc.Status` a server sends beside its status code.
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class KairosError(Exception):
    """A call to the api failed.

    `code` is the gRPC status code, `message` the server's message, and `violations` the
    `(field, description)` pairs of a `google.rpc.BadRequest` detail (empty unless the code is
    `INVALID_ARGUMENT`).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        violations: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.violations: list[tuple[str, str]] = list(violations or [])

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> KairosError:
        """The error a failed call raised, with its BadRequest violations decoded."""
        return cls(error.code(), error.details() or "", _violations(error))


def _violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    # Decoded by hand rather than with grpc_status.rpc_status.from_call, which raises when the
    # detail's message differs from the status message: a mismatch must not hide the violations.
    found: list[tuple[str, str]] = []
    # The stubs type trailing metadata as the sync API's; grpc.aio yields (key, value) pairs.
    pairs = cast(Iterable[tuple[str, str | bytes]], error.trailing_metadata() or ())
    for key, value in pairs:
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for packed in status.details:
            if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                packed.Unpack(bad_request)
                found.extend((v.field, v.description) for v in bad_request.field_violations)
    return found

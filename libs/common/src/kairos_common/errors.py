"""Typed domain errors. They name what went wrong; the gRPC edge maps them to status codes.

Nothing here imports grpc: `kairos_common.grpc.errors` holds the one mapping to status codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class KairosError(Exception):
    """Base of every error that Kairos reports to a caller on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FieldViolation:
    """One broken rule on one field, named as the client sent it (`targets[0].account_id`)."""

    field: str
    description: str


class InvalidArgument(KairosError):
    """The request is malformed or breaks a rule; `violations` name each field and rule."""

    def __init__(self, message: str, violations: Iterable[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations = tuple(violations)

    @classmethod
    def of(cls, field: str, description: str) -> InvalidArgument:
        """One violation on one field."""
        return cls(f"{field}: {description}", [FieldViolation(field, description)])

    @classmethod
    def collect(cls, violations: Iterable[FieldViolation]) -> InvalidArgument:
        """Several violations reported together."""
        found = tuple(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in found)
        return cls(summary or "invalid request", found)


class NotFound(KairosError):
    """The thing does not exist, or belongs to another tenant."""


class AlreadyExists(KairosError):
    """The thing already exists."""


class FailedPrecondition(KairosError):
    """The request is valid, but the thing's state does not allow it (the message says why)."""


class Aborted(KairosError):
    """A concurrent change won (for example a stale expected revision); read again and retry."""


class Unauthenticated(KairosError):
    """No valid credential was presented."""


class PermissionDenied(KairosError):
    """The credential is valid but does not allow this call."""


class ResourceExhausted(KairosError):
    """A limit was reached."""


class Unavailable(KairosError):
    """A dependency is down; the same call may succeed later."""

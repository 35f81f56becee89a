"""Protobuf enum values as people type and read them: `x`, `scheduled`, `retry_wait`.

Platforms are not here: the commands take `kairos_common.platforms.Platform` itself.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import EnumDescriptor

from kairos.posts.v1 import posts_pb2


class PostStatusName(enum.StrEnum):
    """Post statuses, by the names the CLI accepts."""

    draft = "draft"
    pending_approval = "pending_approval"
    scheduled = "scheduled"
    publishing = "publishing"
    published = "published"
    partially_published = "partially_published"
    failed = "failed"
    missed = "missed"
    cancelled = "cancelled"
    rejected = "rejected"
    unknown = "unknown"


class AccountStatusName(enum.StrEnum):
    """Account statuses, by the names the CLI accepts."""

    active = "active"
    needs_reauth = "needs_reauth"
    paused = "paused"
    disconnected = "disconnected"


class OrderName(enum.StrEnum):
    """Orders of `posts list`."""

    newest = "newest"
    oldest = "oldest"
    soonest = "soonest"


ORDERS: dict[OrderName, posts_pb2.PostOrder.ValueType] = {
    OrderName.newest: posts_pb2.POST_ORDER_CREATED_NEWEST,
    OrderName.oldest: posts_pb2.POST_ORDER_CREATED_OLDEST,
    OrderName.soonest: posts_pb2.POST_ORDER_SCHEDULED_SOONEST,
}


def platform(name: str) -> posts_pb2.Platform.ValueType:
    return posts_pb2.Platform.Value(f"PLATFORM_{name.upper()}")


def post_status(name: str) -> posts_pb2.PostStatus.ValueType:
    return posts_pb2.PostStatus.Value(f"POST_STATUS_{name.upper()}")


def account_status(name: str) -> posts_pb2.AccountStatus.ValueType:
    return posts_pb2.AccountStatus.Value(f"ACCOUNT_STATUS_{name.upper()}")


def enum_label(enum: EnumDescriptor, value: int) -> str:
    """Any enum value as the command line writes it: its name without the enum's prefix, in
    lower case (`POST_STATUS_PENDING_APPROVAL` -> `pending_approval`); "" for the unspecified
    value, and the number itself for a value newer than this build."""
    found = enum.values_by_number.get(value)
    if found is None:
        return str(value)
    unspecified = enum.values_by_number.get(0)
    prefix = unspecified.name.removesuffix("UNSPECIFIED") if unspecified is not None else ""
    if value == 0:
        return ""
    return found.name.removeprefix(prefix).lower()


def _label(name_of: Callable[[Any], str], prefix: str, value: int) -> str:
    try:
        return name_of(value).removeprefix(prefix).lower()
    except ValueError:  # a value newer than this build
        return str(value)


def platform_label(value: int) -> str:
    return _label(posts_pb2.Platform.Name, "PLATFORM_", value)


def post_status_label(value: int) -> str:
    return _label(posts_pb2.PostStatus.Name, "POST_STATUS_", value)


def target_status_label(value: int) -> str:
    return _label(posts_pb2.TargetStatus.Name, "TARGET_STATUS_", value)


def account_status_label(value: int) -> str:
    return _label(posts_pb2.AccountStatus.Name, "ACCOUNT_STATUS_", value)


def error_class_label(value: int) -> str:
    if value == posts_pb2.ERROR_CLASS_UNSPECIFIED:
        return "-"
    return _label(posts_pb2.ErrorClass.Name, "ERROR_CLASS_", value)

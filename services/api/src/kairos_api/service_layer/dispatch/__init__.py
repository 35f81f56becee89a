"""Use cases of DispatchService, one module per stage: claim due targets, begin attempts (the
fence), complete them, sweep what time settled, save refreshed tokens.

The target row is the single source of truth. A delivery (a claim) gets a fresh `delivery_id`;
every later step names it, and a step whose delivery is no longer the target's current one, or
whose post changed revision since the claim, is refused: edits and deletes always win. The rules
of each step are pure functions in `kairos_api.domain.delivery`; these modules read rows, apply
the rules and write the answers in as few statements as the database allows.
"""

from kairos_api.domain.delivery import IDEMPOTENT_PLATFORMS, backoff
from kairos_api.service_layer.dispatch.begin import begin_attempt, begin_attempts
from kairos_api.service_layer.dispatch.claim import claim_due
from kairos_api.service_layer.dispatch.complete import complete_attempts
from kairos_api.service_layer.dispatch.credentials import save_refreshed_credentials
from kairos_api.service_layer.dispatch.records import (
    MAX_BATCH,
    MAX_CLAIM,
    Begun,
    Completion,
    Delivery,
    Outcome,
    Refused,
    SweepResult,
)
from kairos_api.service_layer.dispatch.stage import Marked, mark_attempt
from kairos_api.service_layer.dispatch.sweep import fail_delivery, sweep_expired

__all__ = [
    "IDEMPOTENT_PLATFORMS",
    "MAX_BATCH",
    "MAX_CLAIM",
    "Begun",
    "Completion",
    "Delivery",
    "Marked",
    "Outcome",
    "Refused",
    "SweepResult",
    "backoff",
    "begin_attempt",
    "begin_attempts",
    "claim_due",
    "complete_attempts",
    "fail_delivery",
    "mark_attempt",
    "save_refreshed_credentials",
    "sweep_expired",
]

"""The platforms Kairos publishes to, as plain names shared by every service."""

from __future__ import annotations

import enum


class Platform(enum.StrEnum):
    """A platform's stable name, used in NATS subjects, settings and the database."""

    X = "x"
    MASTODON = "mastodon"
    BLUESKY = "bluesky"
    LINKEDIN = "linkedin"
    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    THREADS = "threads"
    TELEGRAM = "telegram"
    DISCORD = "discord"
    SLACK = "slack"
    WEBHOOK = "webhook"
    SANDBOX = "sandbox"

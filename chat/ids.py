"""Identifiers: direct-conversation ids derived from the member pair, ids derived from a user's
idempotency key for what a retry must not make twice, fresh ids for the rest."""

from __future__ import annotations

import hashlib
import re
import uuid

DIRECT_PREFIX = "dm_"
GROUP_PREFIX = "g_"
MEDIA_ID = re.compile(r"[0-9a-f]{32}")  # what ``new_media_id`` makes, and nothing else


def direct_conversation_id(user_a: str, user_b: str) -> str:
    """The one id of the direct conversation between two users, whoever asks first.

    Hashing the sorted pair keeps ids short and free of the users' own characters;
    a NUL separator keeps ("ab", "c") and ("a", "bc") apart.
    """
    low, high = sorted((user_a, user_b))
    digest = hashlib.sha256(f"{low}\x00{high}".encode()).hexdigest()
    return f"{DIRECT_PREFIX}{digest[:32]}"


def is_direct_id(conversation_id: str) -> bool:
    return conversation_id.startswith(DIRECT_PREFIX)


def new_group_id() -> str:
    return f"{GROUP_PREFIX}{uuid.uuid4().hex}"


def keyed_id(kind: str, user_id: str, key: str) -> str:
    """32 hex digits that one user's idempotency key names for one kind of thing (``group``,
    ``media``): a retry with the same key names the same thing, so it is found or refused as
    existing rather than made twice. NULs keep (user, key) pairs apart (neither can hold one)."""
    return hashlib.sha256(f"{kind}\x00{user_id}\x00{key}".encode()).hexdigest()[:32]


def keyed_group_id(user_id: str, key: str) -> str:
    """The id of the group ``user_id`` creates with idempotency key ``key``."""
    return f"{GROUP_PREFIX}{keyed_id('group', user_id, key)}"


def new_message_id() -> str:
    return uuid.uuid4().hex


def new_request_id() -> str:
    return uuid.uuid4().hex


def new_media_id() -> str:
    """32 lowercase hex digits (``MEDIA_ID``)."""
    return uuid.uuid4().hex


def is_media_id(value: str) -> bool:
    """Whether ``value`` is spelled like a media id: one a client sends is checked with this
    before any key (Redis, the media store) is built from it."""
    return MEDIA_ID.fullmatch(value) is not None

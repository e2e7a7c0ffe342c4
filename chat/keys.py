"""Every Redis key the project builds, in one place.

Rule: an id chosen by a client (user, device, conversation, media id) never appears raw in a
key. ``tag`` percent-encodes it (UTF-8; every character but ``A-Z a-z 0-9 _ . - ~`` becomes
``%XX``, ``%`` included, so the encoding is one-to-one) and wraps it in braces. An encoded id
can hold no ``:``, ``{``, ``}``, glob character or space, so a key's id ends at its ``}``:
no id can name another key or another family (``presence:{alice:lease}`` is not
``presence:{alice}:lease``), no key of one id is a prefix of a key of another id, and SCAN
patterns stay exact. The first ``{...}`` is also the Redis Cluster hash tag, so the keys of one
id (a user's status and lease, a conversation's hashes) share a slot.

Ids in the user-id alphabet (``chat.identity``) encode to themselves: ``presence:{alice}``.

Layout:
- ``presence:{user}``, ``presence:{user}:lease``, ``presence:live:{partition}``
- ``conv:{conv}``, ``conv:{conv}:members``, ``conv:{conv}:former``, ``conv:{conv}:last``,
  ``conv:{conv}:receipts``; ``user:{user}:convs``
- ``conn:{user}``; ``workers:{app}``
- ``media:{media}``, ``media:{media}:sent``, ``media:{media}:uses``, ``media:expiry``
- ``push:devices:{user}``, ``push:private:{conv}``, ``push:sent:{message}:{user}:{device}``
- ``rate:send:{user}``, ``rate:typing:{user}``, ``rate:upload:{user}``
- ``block:{user}``, ``mute:{conv}``, ``mentions:{conv}:{user}``, ``profile:{user}``
"""

from __future__ import annotations

import re
from urllib.parse import quote

# What an encoded id looks like inside its braces (for OWNED_KEYS patterns).
TAGGED = r"\{[A-Za-z0-9_.~%-]*\}"


_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch  # what quote() leaves as it is


def tag(ident: str) -> str:
    """``{<ident percent-encoded>}``: one id, unambiguous wherever it sits in a key. (An id
    quote() would leave unchanged skips it: keys are built for every recipient of every
    message, and quote() was most of that.)"""
    return "{" + (ident if _PLAIN(ident) else quote(ident, safe="")) + "}"


def presence(user_id: str) -> str:
    return f"presence:{tag(user_id)}"


def presence_lease(user_id: str) -> str:
    return f"presence:{tag(user_id)}:lease"


def presence_live(partition: int) -> str:
    return f"presence:live:{tag(str(int(partition)))}"


def conversation(cid: str) -> str:
    return f"conv:{tag(cid)}"


def conversation_members(cid: str) -> str:
    return f"conv:{tag(cid)}:members"


def conversation_former(cid: str) -> str:
    return f"conv:{tag(cid)}:former"


def conversation_last(cid: str) -> str:
    return f"conv:{tag(cid)}:last"


def receipts(cid: str) -> str:
    return f"conv:{tag(cid)}:receipts"


def user_conversations(user_id: str) -> str:
    return f"user:{tag(user_id)}:convs"


def user_former(user_id: str) -> str:
    return f"user:{tag(user_id)}:former"


def connections(user_id: str) -> str:
    return f"conn:{tag(user_id)}"


def workers(app_id: str) -> str:
    return f"workers:{tag(app_id)}"


def media(media_id: str) -> str:
    return f"media:{tag(media_id)}"


def media_sent(media_id: str) -> str:
    return f"media:{tag(media_id)}:sent"


def media_uses(media_id: str) -> str:
    return f"media:{tag(media_id)}:uses"


def media_expiry() -> str:
    """Media ids scored by when they expire, in ms (a sorted set; ``projections/media.py``)."""
    return "media:expiry"


def push_devices(user_id: str) -> str:
    return f"push:devices:{tag(user_id)}"


def push_private(cid: str) -> str:
    return f"push:private:{tag(cid)}"


def push_sent(message_id: str, user_id: str, device_id: str) -> str:
    return f"push:sent:{tag(message_id)}:{tag(user_id)}:{tag(device_id)}"


def blocked(user_id: str) -> str:
    """The users ``user_id`` blocked (a set)."""
    return f"block:{tag(user_id)}"


def muted(cid: str) -> str:
    """A conversation's mutes (a hash user -> muted_until)."""
    return f"mute:{tag(cid)}"


def mentions(cid: str, user_id: str) -> str:
    """The seqs of a conversation's messages that mention a user (a sorted set)."""
    return f"mentions:{tag(cid)}:{tag(user_id)}"


def profile(user_id: str) -> str:
    return f"profile:{tag(user_id)}"


def created(user_id: str, cid: str) -> str:
    """That ``user_id`` was charged for creating ``cid`` (a retry is not charged twice)."""
    return f"created:{tag(user_id)}:{tag(cid)}"


SEND_BUCKET = "rate:send:"
TYPING_BUCKET = "rate:typing:"
CREATE_BUCKET = "rate:create:"  # conversation creations per user


def upload_window(user_id: str) -> str:
    """A user's uploads in the current window (a hash: count, bytes; ``gateway/upload_limits.py``)."""
    return f"rate:upload:{tag(user_id)}"


def bucket(prefix: str, name: str) -> str:
    """A token bucket's key: ``<prefix>{name}`` (``rate:send:{alice}``)."""
    return f"{prefix}{tag(name)}"


def owned(*patterns: str) -> re.Pattern[str]:
    """A projection's ``OWNED_KEYS``: ``{id}`` in each pattern stands for one encoded id."""
    return re.compile("|".join(re.escape(p).replace(re.escape("{id}"), TAGGED) for p in patterns))

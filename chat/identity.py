"""What a user id and a device id may be, checked wherever one enters the system.

User ids (dev sign-in, JWT ``sub``, members of a new conversation, members added, a direct
conversation's peer, a member removed, presence queries):

- 1 to 64 characters of ``a-z``, ``0-9``, ``.``, ``_``, ``-`` and ``@``, the first a letter or a
  digit. No spaces, no controls, no format characters (``U+202E``), no non-ASCII letters: nothing
  that renders like another id, and nothing that can split a key, a header or a log line.
- **Normalisation: none is applied; ids must already be in canonical form.** The alphabet is
  left unchanged by NFKC and by Unicode case folding, so every accepted id is its own
  ``NFKC(casefold(id))``; an id outside it, even one that trimming, NFKC or case folding would
  turn into an accepted id (``" alice"``, ``"Alice"``, fullwidth ``"ａｌｉｃｅ"``), is refused rather
  than rewritten, so two spellings never reach one account and a token's subject is never
  silently turned into another user.
- **Case:** lowercase only. ``Alice`` is refused, not folded: identity providers whose subjects
  are mixed-case must map them (to lowercase hex, say) before issuing tokens.

Device ids (the WebSocket's ``device_id``, push registrations): 1 to 128 characters of
``A-Z a-z 0-9 . _ -`` (a device is named only to its own user; case is kept).
"""

from __future__ import annotations

import re

from chat.errors import BadRequest

MAX_USER_ID = 64
MAX_DEVICE_ID = 128

_USER_ID = re.compile(r"[a-z0-9][a-z0-9._@-]*")
_DEVICE_ID = re.compile(r"[A-Za-z0-9._-]+")


def user_id_problem(value: object) -> str | None:
    """Why ``value`` is not a user id, or None if it is one."""
    if not isinstance(value, str) or not value:
        return "a user id is a non-empty string"
    if len(value) > MAX_USER_ID:
        return f"a user id is at most {MAX_USER_ID} characters"
    if not _USER_ID.fullmatch(value):
        if _USER_ID.fullmatch(value.lower()):
            return "a user id is lowercase"
        return "a user id holds only a-z, 0-9, '.', '_', '-' and '@', and starts with a letter or digit"
    return None


def check_user_id(value: object, name: str = "user_id") -> str:
    """``value`` if it is a user id; else ``BadRequest`` naming the field."""
    problem = user_id_problem(value)
    if problem is not None:
        raise BadRequest(f"{name}: {problem}, not {_shown(value)}")
    assert isinstance(value, str)
    return value


def check_user_ids(values: object, name: str) -> list[str]:
    """A list of user ids (``BadRequest`` for anything else)."""
    if not isinstance(values, list):
        raise BadRequest(f"{name} must be a list of user ids")
    return [check_user_id(v, name) for v in values]


def check_device_id(value: object, name: str = "device_id") -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} is required and must be a non-empty string")
    if len(value) > MAX_DEVICE_ID:
        raise BadRequest(f"{name} is longer than {MAX_DEVICE_ID} characters")
    if not _DEVICE_ID.fullmatch(value):
        raise BadRequest(f"{name} holds only A-Z, a-z, 0-9, '.', '_' and '-', not {_shown(value)}")
    return value


def _shown(value: object) -> str:
    """The refused value, escaped (``ascii``) so that it cannot reorder or hide the message."""
    return ascii(value)[:80]

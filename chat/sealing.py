"""Message bodies in the event log are sealed: each message has its own random key, and a
body on the events topic (``MessageAccepted``, ``MessageEdited``) is AES-256-GCM ciphertext
under it, bound to its conversation, seq and version by the associated data.

The keys live outside the log (``projections/message_keys.py``). Deleting a message destroys
its key, and retention expires keys with their messages, so a deleted or expired body cannot
come back from the log: not by ``chat replay``, not by ``chat rebuild``, not by reading the
topic's bytes. The events topic keeps everything else about the message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chat.events import Sealed

KEY_BYTES = 32
NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class KeyRef:
    """Which key: a message's original body is version 0, an edit's is its change_seq."""

    conversation_id: str
    seq: int
    version: int = 0


@dataclass(frozen=True, slots=True)
class MessageKey:
    ref: KeyRef
    key: bytes
    expires_at: int  # ms since the epoch: the message's own expiry (sent_at + retention)


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def _aad(ref: KeyRef) -> bytes:
    return f"{ref.conversation_id}\x00{ref.seq}\x00{ref.version}".encode()


def seal(key: bytes, ref: KeyRef, body: str) -> Sealed:
    nonce = os.urandom(NONCE_BYTES)
    return Sealed(nonce=nonce, ciphertext=AESGCM(key).encrypt(nonce, body.encode(), _aad(ref)))


def unseal(key: bytes, ref: KeyRef, sealed: Sealed) -> str | None:
    """The body, or None if this key and place do not open it (a wrong key, or a body moved
    to another message)."""
    try:
        return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, _aad(ref)).decode()
    except (InvalidTag, ValueError):
        return None

"""Sealed bodies: each opens only with its own key and at its own place in the log."""

from __future__ import annotations

from chat.events import MessageAccepted, MessageDeleted, MessageEdited, Origin
from chat.sealing import KeyRef, new_key, seal, unseal
from projections.message_keys import key_ref, seal_batch

ORIGIN = Origin(gateway_id="g1")


def accepted(seq: int, body: str) -> MessageAccepted:
    return MessageAccepted(conversation_id="c1", seq=seq, message_id=f"m{seq}", sender_id="alice",
                           client_msg_id=f"k{seq}", body=body, sent_at=1_000, origin=ORIGIN)


def test_a_sealed_body_opens_with_its_key_and_place_only() -> None:
    key, ref = new_key(), KeyRef("c1", 7)
    sealed = seal(key, ref, "meet at 9 ☕")
    assert b"meet" not in sealed.ciphertext
    assert unseal(key, ref, sealed) == "meet at 9 ☕"
    assert unseal(new_key(), ref, sealed) is None  # another message's key
    assert unseal(key, KeyRef("c1", 8), sealed) is None  # moved to another seq
    assert unseal(key, KeyRef("c2", 7), sealed) is None  # or conversation
    assert unseal(key, KeyRef("c1", 7, 1), sealed) is None  # or version
    assert seal(key, ref, "same").nonce != seal(key, ref, "same").nonce


def test_seal_batch_seals_bodies_under_new_keys_and_passes_the_rest() -> None:
    edit = MessageEdited(conversation_id="c1", seq=1, change_seq=4, change_id="e1", user_id="alice",
                         body="edited words", edited_at=2_000, origin=ORIGIN)
    deleted = MessageDeleted(conversation_id="c1", seq=2, change_seq=5, change_id="d1", user_id="alice",
                             deleted_at=2_000, origin=ORIGIN)
    out, keys = seal_batch([accepted(1, "first words"), edit, deleted], lambda e: 99)
    assert out[2] is deleted
    assert [o.body for o in out[:2]] == ["", ""]
    assert [k.ref for k in keys] == [KeyRef("c1", 1, 0), KeyRef("c1", 1, 4)]
    assert {k.expires_at for k in keys} == {99}
    assert keys[0].key != keys[1].key
    assert unseal(keys[0].key, key_ref(out[0]), out[0].sealed) == "first words"
    assert unseal(keys[1].key, key_ref(out[1]), out[1].sealed) == "edited words"
    again, more = seal_batch(out, lambda e: 99)  # sealed once only
    assert again == out and more == []

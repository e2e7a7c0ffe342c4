"""Blocking and mute in the sequencer (decide/evolve), and the pure helpers others call."""

from __future__ import annotations

import itertools

import pytest

from chat.events import (
    BlockChanged, BlockRequested, CommandRejected, ConversationCreateRequested, ConversationCreated,
    MessageAccepted, MessageDeduplicated, MessageRejected, MessageSendRequested, MuteChanged, MuteRequested, Origin,
)
from chat.ids import direct_conversation_id
from streams.model import Limits, Sequencer, blocked_in, decide, is_muted

O = Origin("gw-1", None, "req")
DM = direct_conversation_id("alice", "bob")
DAY = 86_400_000


def block(user="alice", other="bob", on=True, conv=None):
    return BlockRequested(conversation_id=conv or direct_conversation_id(user, other), user_id=user,
                          blocked_id=other, blocked=on, origin=O)


def create_direct(creator="bob", peer="alice"):
    return ConversationCreateRequested(conversation_id=direct_conversation_id(creator, peer), kind="direct",
                                       creator_id=creator, member_ids=[peer], origin=O)


def send(cmid, sender="bob", conv=DM):
    return MessageSendRequested(conversation_id=conv, sender_id=sender, client_msg_id=cmid, body="hi", origin=O)


@pytest.fixture
def seq():
    s = Sequencer(Limits(dedup_window_ms=DAY))
    ids = (f"m{i}" for i in itertools.count(1))
    s.run = lambda cmd, now=1_000: s.handle(cmd, now_ms=now, new_id=lambda: next(ids))
    return s


def test_a_block_is_an_event_and_answers_even_when_nothing_changes(seq):
    (first,) = seq.run(block())
    assert first == BlockChanged(DM, "alice", "bob", True, 1_000, O)
    assert seq.run(block()) == [BlockChanged(DM, "alice", "bob", True, 1_000, O)]
    assert seq.blocks == {DM: {("alice", "bob")}}
    (undone,) = seq.run(block(on=False))
    assert isinstance(undone, BlockChanged) and not undone.blocked and seq.blocks == {}


@pytest.mark.parametrize("command", [block(other="alice"), block(conv="dm_other"), block(conv="g_1")])
def test_a_block_of_oneself_or_under_another_id_is_refused(seq, command):
    (refused,) = seq.run(command)
    assert isinstance(refused, CommandRejected) and refused.code == "bad_request"
    assert seq.blocks == {}


def test_the_blocked_user_cannot_create_the_direct_conversation_even_before_it_exists(seq):
    seq.run(block())
    (refused,) = seq.run(create_direct("bob", "alice"))
    assert isinstance(refused, CommandRejected) and refused.code == "forbidden"
    assert DM not in seq.conversations
    # The blocker can.
    (created,) = seq.run(create_direct("alice", "bob"))
    assert isinstance(created, ConversationCreated)


def test_creating_an_existing_direct_conversation_when_blocked_is_forbidden_not_conflict(seq):
    seq.run(create_direct("bob", "alice"))
    (again,) = seq.run(create_direct("bob", "alice"))
    assert again.code == "conflict"  # the gateway answers this with the existing one
    seq.run(block())
    (refused,) = seq.run(create_direct("bob", "alice"))
    assert refused.code == "forbidden"


def test_the_blocked_users_sends_are_refused_the_blockers_are_not_and_unblock_restores(seq):
    seq.run(create_direct())
    (before,) = seq.run(send("c1"))
    assert isinstance(before, MessageAccepted) and before.seq == 1
    seq.run(block())
    (refused,) = seq.run(send("c2"))
    assert isinstance(refused, MessageRejected) and (refused.code, refused.client_msg_id) == ("forbidden", "c2")
    (again,) = seq.run(send("c1"))  # a re-send of a message accepted before the block: its ack again
    assert isinstance(again, MessageDeduplicated) and again.seq == 1
    (blocker,) = seq.run(send("a1", sender="alice"))
    assert isinstance(blocker, MessageAccepted) and blocker.seq == 2
    (old,) = seq.run(send("c1"), now=1_000 + DAY + 1)  # out of the dedup window: a new send, refused
    assert isinstance(old, MessageRejected) and old.code == "forbidden"
    seq.run(block(on=False))
    (after,) = seq.run(send("c3"))
    assert isinstance(after, MessageAccepted) and after.seq == 3


def test_a_stranger_still_reads_not_found_and_groups_are_unaffected(seq):
    seq.run(block())
    (stranger,) = seq.run(send("x", sender="carol"))
    assert stranger.code == "not_found"
    seq.run(ConversationCreateRequested(conversation_id="g1", kind="group", creator_id="alice",
                                        member_ids=["bob"], origin=O, name="g"))
    (in_group,) = seq.run(send("g", conv="g1"))
    assert isinstance(in_group, MessageAccepted)


def test_blocks_come_back_from_the_log(seq):
    events = seq.run(create_direct()) + seq.run(block()) + seq.run(block("bob", "alice"))
    recovered = Sequencer()
    recovered.apply_all(events)
    assert recovered.blocks == {DM: {("alice", "bob"), ("bob", "alice")}}
    recovered.apply(BlockChanged(DM, "alice", "bob", False, 2, O))
    assert blocked_in(recovered.blocks, DM, "alice") and not blocked_in(recovered.blocks, DM, "bob")


def test_blocked_in():
    blocks = {DM: {("alice", "bob")}}
    assert blocked_in(blocks, DM, "bob")
    assert not blocked_in(blocks, DM, "alice")
    assert not blocked_in(blocks, "g1", "bob") and not blocked_in({}, DM, "bob")


def test_decide_without_blocks_is_as_before():
    (created,) = decide(None, create_direct(), now_ms=1, new_id="m")
    assert isinstance(created, ConversationCreated)


def test_mute_is_for_members_only_and_checks_its_value(seq):
    seq.run(create_direct())
    for value in (None, -1, 0, 5_000):
        (muted,) = seq.run(MuteRequested(DM, "alice", value, O))
        assert muted == MuteChanged(DM, "alice", value, 1_000, O)
    (bad,) = seq.run(MuteRequested(DM, "alice", -2, O))
    assert isinstance(bad, CommandRejected) and bad.code == "bad_request"
    (stranger,) = seq.run(MuteRequested(DM, "carol", -1, O))
    assert stranger.code == "not_found"
    (unknown,) = seq.run(MuteRequested("g_none", "alice", -1, O))
    assert unknown.code == "not_found"


def test_is_muted():
    assert is_muted(-1, 10**13) and is_muted(2_000, 1_999)
    assert not is_muted(None, 0) and not is_muted(2_000, 2_000) and not is_muted(0, 1)

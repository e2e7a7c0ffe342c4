"""decide/evolve for protocol 1.1: edits, deletions, reactions, replies, mentions, change ids."""

from __future__ import annotations

import itertools

import pytest

from chat.events import (
    ChangeAcknowledged, CommandRejected, ConversationCreateRequested, ConversationCreated, Member, Media, MessageAccepted,
    MessageDeleteRequested, MessageDeleted, MessageEditRequested, MessageEdited, MessageRejected,
    MessageSendRequested, Origin, ReactionChanged, ReactionRequested, ReplyRef,
)
from chat.ids import direct_conversation_id
from streams.model import Limits, Sequencer, evolve

ORIGIN = Origin("gw-1", "dev-1")
DAY = 86_400_000
T0 = 1_000_000


def send(cmid, sender="alice", conv="g1", body="hi", **kw):
    return MessageSendRequested(conversation_id=conv, sender_id=sender, client_msg_id=cmid, body=body,
                                origin=ORIGIN, **kw)


def edit(cid, seq=1, body="fixed", user="alice", conv="g1"):
    return MessageEditRequested(conversation_id=conv, user_id=user, change_id=cid, seq=seq, body=body, origin=ORIGIN)


def delete(cid, seq=1, user="alice", conv="g1"):
    return MessageDeleteRequested(conversation_id=conv, user_id=user, change_id=cid, seq=seq, origin=ORIGIN)


def react(cid, emoji="👍", on=True, seq=1, user="bob", conv="g1"):
    return ReactionRequested(conversation_id=conv, user_id=user, change_id=cid, seq=seq, emoji=emoji, on=on,
                             origin=ORIGIN)


@pytest.fixture
def seq():
    s = Sequencer(Limits(max_body_bytes=100, dedup_window_ms=DAY, edit_window_ms=2 * DAY, retention_ms=90 * DAY,
                         max_reactions_per_user=3))
    ids = (f"m{i}" for i in itertools.count(1))
    s.run = lambda cmd, now=T0: s.handle(cmd, now_ms=now, new_id=lambda: next(ids))[0]
    s.run(ConversationCreateRequested(conversation_id="g1", kind="group", creator_id="alice",
                                      member_ids=["bob", "carol"], origin=ORIGIN, name="team"))
    s.run(send("c1"))
    return s


def code(event):
    assert isinstance(event, (CommandRejected, MessageRejected)), event
    return event.code


def test_changes_take_their_own_gap_free_change_seq_and_never_a_seq(seq):
    changes = [seq.run(edit("e1")), seq.run(react("r1")), seq.run(react("r2", on=False)), seq.run(delete("d1"))]
    assert [type(c) for c in changes] == [MessageEdited, ReactionChanged, ReactionChanged, MessageDeleted]
    assert [c.change_seq for c in changes] == [1, 2, 3, 4]
    state = seq.conversations["g1"]
    assert (state.last_seq, state.last_change_seq) == (1, 4)
    assert seq.run(send("c2")).seq == 2


def test_only_the_sender_edits_within_the_window_and_never_a_deleted_message(seq):
    assert code(seq.run(edit("e1", user="bob"))) == "forbidden"
    assert code(seq.run(edit("e2"), now=T0 + 2 * DAY + 1)) == "forbidden"
    assert isinstance(seq.run(edit("e3"), now=T0 + 2 * DAY), MessageEdited)
    seq.run(delete("d1"))
    assert code(seq.run(edit("e4", body="again"))) == "conflict"


def test_edit_body_rules_are_those_of_send(seq):
    assert code(seq.run(edit("e1", body="x" * 101))) == "too_large"
    assert code(seq.run(edit("e2", body=""))) == "bad_request"


def test_a_change_that_changes_nothing_answers_with_no_change_seq(seq):
    same = seq.run(edit("e1", body="hi"))
    assert isinstance(same, ChangeAcknowledged) and same.change_seq is None
    seq.run(react("r1"))
    again = seq.run(react("r2"))
    assert isinstance(again, ChangeAcknowledged) and again.change_seq is None
    off = seq.run(react("r3", emoji="🎉", on=False))
    assert isinstance(off, ChangeAcknowledged) and off.change_seq is None
    seq.run(delete("d1"))
    twice = seq.run(delete("d2"))
    assert isinstance(twice, ChangeAcknowledged) and twice.change_seq is None
    assert seq.conversations["g1"].last_change_seq == 2


def test_a_retried_change_id_gets_the_first_answer_whatever_it_asks(seq):
    first = seq.run(edit("e1", body="one"))
    retry = seq.run(edit("e1", body="two"))
    assert isinstance(retry, ChangeAcknowledged) and (retry.seq, retry.change_seq) == (1, first.change_seq)
    noop = seq.run(react("r1", on=False))
    assert noop.change_seq is None
    assert seq.run(react("r1", on=True)).change_seq is None  # remembered as "nothing changed"
    # ids are per user: bob's "e1" is not alice's
    assert isinstance(seq.run(react("e1")), ReactionChanged)
    # past the window the id is forgotten and decided anew
    assert isinstance(seq.run(edit("e1", body="three"), now=T0 + DAY + 1), MessageEdited)


def test_a_refusal_is_not_remembered(seq):
    assert code(seq.run(edit("e1", body="x" * 101))) == "too_large"
    assert isinstance(seq.run(edit("e1", body="ok")), MessageEdited)


def test_delete_by_the_sender_or_a_group_admin_only(seq):
    seq.run(send("b1", sender="bob"))
    assert code(seq.run(delete("d1", seq=1, user="carol"))) == "forbidden"
    assert code(seq.run(delete("d2", seq=1, user="bob"))) == "forbidden"
    deleted = seq.run(delete("d3", seq=2, user="alice"))  # alice is the group's admin
    assert isinstance(deleted, MessageDeleted) and deleted.user_id == "alice"
    assert isinstance(seq.run(delete("d4", seq=1, user="alice")), MessageDeleted)


def test_in_a_direct_conversation_nobody_deletes_the_others_message():
    s = Sequencer()
    dm = direct_conversation_id("alice", "bob")
    s.handle(ConversationCreateRequested(conversation_id=dm, kind="direct", creator_id="alice", member_ids=["bob"],
                                         origin=ORIGIN), now_ms=T0, new_id=lambda: "x")
    s.handle(send("c1", conv=dm), now_ms=T0, new_id=lambda: "m1")
    (refused,) = s.handle(delete("d1", conv=dm, user="bob"), now_ms=T0, new_id=lambda: "x")
    assert code(refused) == "forbidden"


def test_deleting_names_the_media_to_erase(seq):
    media = Media("md1", "/v1/media/md1", "image/png", 3)
    seq.run(send("c2", media_id="md1", media=media, body=""))
    deleted = seq.run(delete("d1", seq=2))
    assert deleted.media_id == "md1"
    assert seq.run(delete("d2", seq=1)).media_id is None


def test_reactions_rules(seq):
    assert code(seq.run(react("r0", emoji=""))) == "bad_request"
    assert code(seq.run(react("r1", emoji="x" * 65))) == "bad_request"
    assert isinstance(seq.run(react("r2", emoji="x" * 64)), ReactionChanged)
    seq.run(react("r3", emoji="a"))
    seq.run(react("r4", emoji="b"))
    assert code(seq.run(react("r5", emoji="c"))) == "bad_request"  # the 4th with a limit of 3
    assert isinstance(seq.run(react("r6", emoji="c", user="carol")), ReactionChanged)  # per user
    assert isinstance(seq.run(react("r7", emoji="a", on=False)), ReactionChanged)
    assert isinstance(seq.run(react("r8", emoji="c")), ReactionChanged)  # room again
    facts = seq.conversations["g1"].messages[1]
    assert facts.reactions == {"x" * 64: ["bob"], "b": ["bob"], "c": ["carol", "bob"]}
    seq.run(delete("d1"))
    assert code(seq.run(react("r9", emoji="z"))) == "conflict"
    assert seq.conversations["g1"].messages[1].reactions is None


def test_unknown_or_expired_message_and_non_members_read_not_found(seq):
    assert code(seq.run(edit("e1", seq=7))) == "not_found"
    assert code(seq.run(react("r1", user="mallory"))) == "not_found"
    assert code(seq.run(react("r2", conv="nope"))) == "not_found"
    assert code(seq.run(react("r3"), now=T0 + 90 * DAY)) == "not_found"


def test_expired_messages_leave_the_sequencers_memory(seq):
    seq.run(send("c2"), now=T0 + 90 * DAY + 1)
    assert list(seq.conversations["g1"].messages) == [2]


def test_reply_to_a_message_of_this_conversation_names_its_sender(seq):
    seq.run(send("b1", sender="bob"))
    reply = seq.run(send("c2", reply_to=2))
    assert reply.reply_to == ReplyRef(2, "bob")
    assert code(seq.run(send("c3", reply_to=9))) == "bad_request"
    assert code(seq.run(send("c4", reply_to=1), now=T0 + 90 * DAY)) == "bad_request"


def test_mentions_keep_members_only_in_order_without_repeats(seq):
    accepted = seq.run(send("c2", mentions=["carol", "mallory", "bob", "carol"]))
    assert isinstance(accepted, MessageAccepted) and accepted.mentions == ["carol", "bob"]


def test_a_deletion_names_whom_the_message_mentioned(seq):
    """So that their unread_mentions stop counting it (projections/social.py)."""
    seq.run(send("c2", mentions=["carol", "bob"]))
    assert seq.run(delete("d1", seq=2)).mentions == ["carol", "bob"]
    assert seq.run(delete("d2", seq=1)).mentions == []


def test_replaying_the_events_rebuilds_the_change_state(seq):
    events = []
    for cmd in (edit("e1"), react("r1"), react("r2", emoji="🎉", user="carol"), delete("d1", seq=1)):
        events.append(seq.run(cmd))
    fresh = Sequencer(seq.limits)
    original = seq.conversations["g1"]
    state = evolve(None, ConversationCreated("g1", "group", "team", "", [Member("alice", "admin"), Member("bob", "member"),
                                                                       Member("carol", "member")], "alice", T0, ORIGIN))
    first = MessageAccepted("g1", 1, "m1", "alice", "c1", "hi", T0, ORIGIN)
    for e in [first, *events, *events]:  # applying twice changes nothing
        state = evolve(state, e)
    assert state.last_change_seq == original.last_change_seq == 4
    assert state.messages[1] == original.messages[1]
    assert state.recent_changes == original.recent_changes
    fresh.conversations["g1"] = state
    assert fresh.handle(edit("e1"), now_ms=T0, new_id=lambda: "x")[0].change_seq == 1


def test_a_blocked_user_may_not_edit_or_react_in_the_direct_conversation_but_may_delete():
    from chat.events import BlockChanged

    s = Sequencer()
    dm = direct_conversation_id("alice", "bob")
    s.handle(ConversationCreateRequested(conversation_id=dm, kind="direct", creator_id="alice", member_ids=["bob"],
                                         origin=ORIGIN), now_ms=T0, new_id=lambda: "x")
    s.handle(send("c1", conv=dm, sender="bob"), now_ms=T0, new_id=lambda: "m1")
    s.apply(BlockChanged(dm, "alice", "bob", True, T0, ORIGIN))
    for cmd in (edit("e1", conv=dm, user="bob"), react("r1", conv=dm, user="bob")):
        (refused,) = s.handle(cmd, now_ms=T0, new_id=lambda: "x")
        assert code(refused) == "forbidden"
    (own,) = s.handle(delete("d1", conv=dm, user="bob"), now_ms=T0, new_id=lambda: "x")
    assert isinstance(own, MessageDeleted)
    (alice_reacts,) = s.handle(react("r2", conv=dm, user="alice", seq=1), now_ms=T0, new_id=lambda: "x")
    assert code(alice_reacts) == "conflict"  # the blocker is not blocked; the message is deleted

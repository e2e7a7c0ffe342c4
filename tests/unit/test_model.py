"""decide/evolve: seq assignment, dedup, membership checks, creation rules."""

from __future__ import annotations

import itertools

import pytest

from chat.events import (
    CommandRejected, ConversationCreateRequested, ConversationCreated, ConversationUpdateRequested,
    ConversationUpdated, Media, Member, MemberRemoveRequested, MemberRemoved, MembersAddRequested, MembersAdded,
    MessageAccepted, MessageDeduplicated, MessageRejected, MessageSendRequested, Origin, ReceiptRecordRequested,
    ReceiptRecorded,
)
from chat.ids import direct_conversation_id
from streams.model import Limits, Sequencer, decide, evolve

ORIGIN = Origin("gw-1", "dev-1")
DAY = 86_400_000


def create_group(conv="g1", creator="alice", members=("bob", "carol"), **kw):
    return ConversationCreateRequested(conversation_id=conv, kind="group", creator_id=creator,
                                       member_ids=list(members), origin=ORIGIN, name="team", **kw)


def send(cmid, sender="alice", conv="g1", body="hi", **kw):
    return MessageSendRequested(conversation_id=conv, sender_id=sender, client_msg_id=cmid,
                                body=body, origin=ORIGIN, **kw)


@pytest.fixture
def seq():
    s = Sequencer(Limits(max_body_bytes=100, max_members=5, dedup_window_ms=DAY))
    ids = (f"m{i}" for i in itertools.count(1))
    s.run = lambda cmd, now=1_000: s.handle(cmd, now_ms=now, new_id=lambda: next(ids))
    s.run(create_group())
    return s


def test_group_creator_is_admin_and_members_deduplicated(seq):
    (created,) = seq.run(create_group("g2", members=("bob", "bob", "alice", "")))
    assert isinstance(created, ConversationCreated)
    assert [(m.user_id, m.role) for m in created.members] == [("alice", "admin"), ("bob", "member")]


def test_seq_starts_at_one_and_has_no_gaps(seq):
    events = [seq.run(send(f"c{i}"))[0] for i in range(5)]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert all(isinstance(e, MessageAccepted) for e in events)
    assert seq.conversations["g1"].last_seq == 5


def test_rejected_send_does_not_consume_a_seq(seq):
    seq.run(send("a"))
    (rejected,) = seq.run(send("b", body="x" * 101))
    assert isinstance(rejected, MessageRejected) and rejected.code == "too_large" and rejected.client_msg_id == "b"
    (accepted,) = seq.run(send("c"))
    assert accepted.seq == 2


def test_resend_is_deduplicated_with_the_original_ack(seq):
    (first,) = seq.run(send("same"))
    (again,) = seq.run(send("same", body="different"), now=5_000)
    assert isinstance(again, MessageDeduplicated)
    assert (again.seq, again.message_id, again.sent_at) == (first.seq, first.message_id, first.sent_at)
    assert seq.conversations["g1"].last_seq == 1


def test_same_client_msg_id_from_another_sender_is_a_new_message(seq):
    seq.run(send("same", sender="alice"))
    (other,) = seq.run(send("same", sender="bob"))
    assert isinstance(other, MessageAccepted) and other.seq == 2


def test_dedup_window_expires(seq):
    seq.run(send("old"), now=1_000)
    seq.run(send("new"), now=1_000 + DAY + 1)
    assert ("alice", "old") not in seq.conversations["g1"].recent
    (again,) = seq.run(send("old"), now=1_000 + DAY + 2)
    assert isinstance(again, MessageAccepted) and again.seq == 3


@pytest.mark.parametrize("cmd", [send("x", sender="mallory"), send("x", conv="nope")])
def test_non_member_and_unknown_conversation_read_the_same(seq, cmd):
    (rejected,) = seq.run(cmd)
    assert isinstance(rejected, MessageRejected) and rejected.code == "not_found"
    assert seq.conversations["g1"].last_seq == 0


def test_empty_body_and_missing_client_msg_id_are_bad_requests(seq):
    assert seq.run(send("x", body=""))[0].code == "bad_request"
    assert seq.run(send(""))[0].code == "bad_request"


def test_body_limit_counts_utf8_bytes_not_characters(seq):
    assert seq.run(send("e", body="é" * 50))[0].seq == 1  # 100 bytes: at the limit
    assert seq.run(send("f", body="é" * 51))[0].code == "too_large"


def test_creating_an_existing_conversation_conflicts(seq):
    (rejected,) = seq.run(create_group())
    assert isinstance(rejected, CommandRejected) and rejected.code == "conflict"


def test_group_member_limit(seq):
    (rejected,) = seq.run(create_group("big", members=[f"u{i}" for i in range(5)]))
    assert rejected.code == "too_large"


def test_direct_conversation_needs_the_derived_id_and_one_peer(seq):
    good = direct_conversation_id("alice", "bob")
    cmd = ConversationCreateRequested(conversation_id=good, kind="direct", creator_id="alice",
                                      member_ids=["bob"], origin=ORIGIN)
    (created,) = seq.run(cmd)
    assert {m.user_id for m in created.members} == {"alice", "bob"}
    assert created.name == ""
    wrong = ConversationCreateRequested(conversation_id="dm_x", kind="direct", creator_id="alice",
                                        member_ids=["carol"], origin=ORIGIN)
    assert seq.run(wrong)[0].code == "bad_request"
    selfie = ConversationCreateRequested(conversation_id=direct_conversation_id("alice", "alice"),
                                         kind="direct", creator_id="alice", member_ids=["alice"], origin=ORIGIN)
    assert seq.run(selfie)[0].code == "bad_request"


def test_evolve_is_idempotent_for_replayed_events(seq):
    (accepted,) = seq.run(send("a"))
    state = seq.conversations["g1"]
    again = evolve(state, accepted)
    assert again.last_seq == 1 and len(again.recent) == 1
    created = ConversationCreated("g1", "group", "other", "", [], "x", 0, ORIGIN)
    assert evolve(state, created).name == "team"


def test_replaying_the_log_rebuilds_the_same_state(seq):
    log = []
    for cmd in [send("a"), send("b", sender="bob"), send("a"), send("c", sender="carol")]:
        log.extend(seq.run(cmd))
    fresh = Sequencer(seq.limits)
    fresh.apply_all([ConversationCreated("g1", "group", "team", "", [], "alice", 1_000, ORIGIN)] + log)
    assert fresh.conversations["g1"].last_seq == 3
    assert fresh.conversations["g1"].recent == seq.conversations["g1"].recent


def test_decide_without_state_is_pure():
    cmd = send("a")
    assert decide(None, cmd, now_ms=1, new_id="m") == decide(None, cmd, now_ms=1, new_id="m")


def update(user="alice", conv="g1", **kw):
    return ConversationUpdateRequested(conversation_id=conv, user_id=user, origin=ORIGIN, **kw)


def add(ids, user="alice", conv="g1"):
    return MembersAddRequested(conversation_id=conv, user_id=user, member_ids=list(ids), origin=ORIGIN)


def remove(member, user="alice", conv="g1"):
    return MemberRemoveRequested(conversation_id=conv, user_id=user, member_id=member, origin=ORIGIN)


def test_admins_rename_members_cannot(seq):
    (updated,) = seq.run(update(name="new name"))
    assert isinstance(updated, ConversationUpdated) and updated.description is None
    assert seq.conversations["g1"].name == "new name"
    assert seq.run(update(user="bob", name="x"))[0].code == "forbidden"
    assert seq.run(update(user="mallory", name="x"))[0].code == "not_found"
    assert seq.run(update())[0].code == "bad_request"
    assert seq.run(update(description="d" * 2_001))[0].code == "too_large"


def test_admins_add_only_new_members_within_the_limit(seq):
    (added,) = seq.run(add(["dave", "bob", "dave"]))
    assert isinstance(added, MembersAdded) and [m.user_id for m in added.members] == ["dave"]
    assert list(seq.conversations["g1"].members) == ["alice", "bob", "carol", "dave"]
    assert seq.run(add(["bob"]))[0].code == "conflict"
    assert seq.run(add(["eve"], user="bob"))[0].code == "forbidden"
    assert seq.run(add(["e1", "e2"]))[0].code == "too_large"  # limit 5 members


def test_membership_records_the_seq_it_happened_at(seq):
    seq.run(send("a"))
    seq.run(send("b"))
    assert seq.run(add(["dave"]))[0].at_seq == 2
    assert seq.run(remove("dave"))[0].at_seq == 2


def test_remove_and_leave(seq):
    assert seq.run(remove("carol", user="bob"))[0].code == "forbidden"  # only admins remove others
    (left,) = seq.run(remove("bob", user="bob"))  # anyone may leave
    assert isinstance(left, MemberRemoved) and left.promoted is None
    (removed,) = seq.run(remove("carol"))
    assert removed.removed_by == "alice"
    assert seq.run(remove("carol"))[0].code == "not_found"
    assert list(seq.conversations["g1"].members) == ["alice"]
    assert seq.run(send("x", sender="bob"))[0].code == "not_found"  # a former member cannot send


def test_last_admin_leaving_promotes_the_longest_standing_member(seq):
    seq.run(add(["dave"]))
    (left,) = seq.run(remove("alice", user="alice"))
    assert left.promoted == "bob"
    assert seq.conversations["g1"].members == {"bob": "admin", "carol": "member", "dave": "member"}
    (left_again,) = seq.run(remove("carol", user="carol"))
    assert left_again.promoted is None  # bob is still an admin


def test_direct_conversations_never_change(seq):
    cid = direct_conversation_id("alice", "bob")
    seq.run(ConversationCreateRequested(conversation_id=cid, kind="direct", creator_id="alice",
                                        member_ids=["bob"], origin=ORIGIN))
    for cmd in (update(conv=cid, name="x"), add(["carol"], conv=cid), remove("bob", user="bob", conv=cid)):
        assert seq.run(cmd)[0].code == "forbidden"


def test_membership_events_replay_to_the_same_state(seq):
    log = []
    for cmd in (add(["dave"]), update(description="about"), remove("alice", user="alice"), send("m", sender="bob")):
        log.extend(seq.run(cmd))
    fresh = Sequencer(seq.limits)
    fresh.apply_all([ConversationCreated("g1", "group", "team", "", [Member("alice", "admin"), Member("bob", "member"),
                                                                    Member("carol", "member")], "alice", 1_000, ORIGIN)] + log + log)
    state, original = fresh.conversations["g1"], seq.conversations["g1"]
    assert (state.members, state.description, state.last_seq) == (original.members, original.description, original.last_seq)


def receipt(seq_, status="read", user="bob", conv="g1"):
    return ReceiptRecordRequested(conversation_id=conv, user_id=user, seq=seq_, status=status, origin=ORIGIN)


def test_receipts_move_watermarks_forward_only(seq):
    for i in range(5):
        seq.run(send(f"m{i}"))
    (delivered,) = seq.run(receipt(4, "delivered"))
    assert isinstance(delivered, ReceiptRecorded) and (delivered.seq, delivered.status) == (4, "delivered")
    assert seq.run(receipt(4, "delivered")) == []  # repeated: nothing
    assert seq.run(receipt(2, "delivered")) == []  # lower: nothing
    (read,) = seq.run(receipt(5))
    state = seq.conversations["g1"]
    assert (state.read["bob"], state.delivered["bob"]) == (5, 5)  # read implies delivered
    assert seq.run(receipt(5, "delivered")) == []


def test_receipt_rules(seq):
    seq.run(send("m"))
    assert seq.run(receipt(2))[0].code == "bad_request"  # beyond the last message
    assert seq.run(receipt(0))[0].code == "bad_request"
    assert seq.run(receipt(1, user="mallory"))[0].code == "not_found"
    assert seq.run(receipt(1, status="seen"))[0].code == "bad_request"


def test_sending_reads_everything_before(seq):
    seq.run(send("a", sender="bob"))
    seq.run(send("b", sender="alice"))
    state = seq.conversations["g1"]
    assert (state.read["alice"], state.read["bob"]) == (2, 1)
    assert seq.run(receipt(2, user="alice")) == []


def test_media_needs_the_metadata_the_gateway_found(seq):
    media = Media("md1", "/v1/media/md1", "image/png", 123)
    (rejected,) = seq.run(send("x1", media_id="md1"))
    assert isinstance(rejected, MessageRejected) and rejected.message == "unknown media_id"
    (mismatch,) = seq.run(send("x2", media_id="md2", media=media))
    assert isinstance(mismatch, MessageRejected) and mismatch.code == "bad_request"
    (accepted,) = seq.run(send("x3", body="", media_id="md1", media=media))
    assert isinstance(accepted, MessageAccepted) and accepted.seq == 1 and accepted.media == media
    (stray,) = seq.run(send("x4", media=media))  # metadata without a media_id is ignored
    assert isinstance(stray, MessageAccepted) and stray.media is None
    (empty,) = seq.run(send("x5", body=""))
    assert isinstance(empty, MessageRejected) and empty.message == "body is empty"


def test_a_keyed_group_create_decided_twice_makes_one_group(seq):
    """A retry of a create whose answer was lost names the same id (keyed_group_id): the
    sequencer refuses it as existing and makes no second group; another key makes another."""
    from chat.ids import keyed_group_id

    first = keyed_group_id("alice", "key-1")
    (created,) = seq.run(create_group(first))
    assert isinstance(created, ConversationCreated)
    (again,) = seq.run(create_group(first, description="asked differently"))
    assert isinstance(again, CommandRejected) and again.code == "conflict"
    assert seq.conversations[first].members == {"alice": "admin", "bob": "member", "carol": "member"}
    (other,) = seq.run(create_group(keyed_group_id("alice", "key-2")))
    assert isinstance(other, ConversationCreated) and other.conversation_id != first

"""``plan`` answers a create refused as existing: a keyed group's retry by its creator gets the
first answer (201 and the group); anyone else, or a creator who left it, gets 409."""

from __future__ import annotations

import orjson

from chat.events import CommandRejected, Origin
from chat.ids import keyed_group_id
from projections.delivery import plan

GROUP = keyed_group_id("alice", "key-1")
CONVERSATION = {"conversation_id": GROUP, "type": "group", "name": "team", "description": "",
                "members": [{"user_id": "alice", "role": "admin"}, {"user_id": "bob", "role": "member"}],
                "created_at": 1, "last_change_seq": 0}


def refused(user_id: str) -> CommandRejected:
    return CommandRejected(conversation_id=GROUP, command="ConversationCreateRequested", user_id=user_id,
                           code="conflict", message="conversation exists", origin=Origin("gw-1", None, "req-1"))


def test_the_creators_retry_of_a_group_create_gets_the_group_with_201():
    ((gateway, delivery),) = plan(refused("alice"), [], {}, CONVERSATION)
    assert gateway == "gw-1" and delivery.request_id == "req-1" and delivery.status == 201
    assert orjson.loads(delivery.frame) == {"type": "conversation", "conversation": CONVERSATION}


def test_a_create_of_an_existing_group_by_a_non_member_is_a_conflict():
    left = {**CONVERSATION, "members": [{"user_id": "bob", "role": "admin"}]}
    for event, conversation in ((refused("alice"), left), (refused("carol"), CONVERSATION)):
        ((_, delivery),) = plan(event, [], {}, conversation)
        assert delivery.status == 409 and orjson.loads(delivery.frame)["code"] == "conflict"

"""The pure rules of blocking, mute, mentions and profiles outside the sequencer: what the gateway
accepts, how a mute reads, who a message mentions, and who push planning leaves alone."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from chat.errors import BadRequest
from chat.events import MessageAccepted, Origin
from gateway.profiles import display_name_value
from gateway.social import muted_until_value
from projections.profiles import profile_object
from projections.push import silenced
from projections.social import mentioned, muted_value

NOW = 1_000_000


def message(mentions=(), sender="alice", sent_at=NOW) -> MessageAccepted:
    return MessageAccepted("c", 1, "m", sender, "cm", "hi", sent_at, Origin("gw"), mentions=list(mentions))


@pytest.mark.parametrize("name", ["a", "Zoë", "x" * 64, "é" * 64, "🙂" * 64, "Ann-Marie O'Neil", "李小龙", "a b"])
def test_display_names_accepted(name):
    assert display_name_value(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "🙂" * 65, None, 7, ["a"], "tab\there", "nul\x00", "del\x7f",
                                  "rtl\u202eoverride", "zero\u200bwidth", "bom\ufeff", "soft\u00adhyphen",
                                  "c1\x85control"])
def test_display_names_refused(name):
    with pytest.raises(BadRequest):
        display_name_value(name)


@pytest.mark.parametrize("value", [None, -1, 0, NOW, 2**63 - 1])
def test_muted_until_accepted(value):
    assert muted_until_value({"muted_until": value}) == value


@pytest.mark.parametrize("body", [{}, {"muted_until": -2}, {"muted_until": 2**63}, {"muted_until": 1.0},
                                  {"muted_until": True}, {"muted_until": False}, {"muted_until": "-1"},
                                  {"muted_until": [1]}])
def test_muted_until_refused(body):
    with pytest.raises(BadRequest):
        muted_until_value(body)


def test_a_mute_reads_null_once_past():
    assert muted_value(None, NOW) is None
    assert muted_value(b"-1", NOW) == -1
    assert muted_value(b"%d" % (NOW + 1), NOW) == NOW + 1
    assert muted_value(str(NOW), NOW) is None and muted_value(0, NOW) is None


def test_mentioned_is_deduplicated_without_the_sender_and_works_on_events_without_mentions():
    assert mentioned(message(["bob", "alice", "bob", "carol"])) == ["bob", "carol"]
    assert mentioned(message()) == []
    v1_like = SimpleNamespace(sender_id="alice", conversation_id="c", seq=1)  # no mentions attribute at all
    assert mentioned(v1_like) == []  # type: ignore[arg-type]


def test_a_muted_member_is_silenced_unless_mentioned():
    assert not silenced(message(), "bob", None)
    assert silenced(message(), "bob", -1)
    assert silenced(message(sent_at=NOW), "bob", NOW + 1)
    assert not silenced(message(sent_at=NOW), "bob", NOW)  # the mute ended as it was sent
    assert not silenced(message(["bob"]), "bob", -1)
    assert silenced(message(["carol"]), "bob", -1)
    v1_like = SimpleNamespace(sent_at=NOW)  # MessageAccepted before mentions existed
    assert silenced(v1_like, "bob", -1) and not silenced(v1_like, "bob", None)  # type: ignore[arg-type]


def test_profile_defaults():
    assert profile_object("bob", None, None) == {"user_id": "bob", "display_name": "bob", "avatar_url": None}
    assert profile_object("bob", "Bob", "ab" * 16) == {"user_id": "bob", "display_name": "Bob",
                                                        "avatar_url": "/v1/media/" + "ab" * 16}

"""Every Redis key family, fed hostile ids: no id may name another id's key, in any family."""

import itertools
import re

import pytest

from chat import keys
from projections import conversations, presence, receipts

HOSTILE = ["alice", "alice:lease", "alice:", ":alice", "live", "live:3", "{alice}", "{alice}:lease",
           "alice}", "{", "}", "}:lease", "*", "alice*", "a b", " alice", "alice\u202e", "%3A", "%",
           "a%3Alease", "x:members", "x:receipts", "x:sent", "", "ü", "a|d", "\x00", "a" * 5000,
           "user:alice:convs", "devices:alice"]

# Every family as (family, the ids the key is of, the key), each id taken from HOSTILE in turn.
ONE_ID = {
    "presence": keys.presence, "presence_lease": keys.presence_lease,
    "conversation": keys.conversation, "members": keys.conversation_members,
    "former": keys.conversation_former, "last": keys.conversation_last, "receipts": keys.receipts,
    "user_convs": keys.user_conversations, "connections": keys.connections, "workers": keys.workers,
    "media": keys.media, "media_sent": keys.media_sent, "media_uses": keys.media_uses, "push_devices": keys.push_devices,
    "push_private": keys.push_private,
    "rate_send": lambda i: keys.bucket(keys.SEND_BUCKET, i),
    "rate_typing": lambda i: keys.bucket(keys.TYPING_BUCKET, i),
    "rate_create": lambda i: keys.bucket(keys.CREATE_BUCKET, i),
    "blocked": keys.blocked, "muted": keys.muted, "profile": keys.profile,
}


def all_keys():
    entries = [(family, (ident,), build(ident)) for family, build in ONE_ID.items() for ident in HOSTILE]
    entries += [("presence_live", (n,), keys.presence_live(n)) for n in (0, 1, 3, 10, 31)]
    for i in HOSTILE:  # push:sent names three ids: vary each in turn
        for ids in {(i, "u", "d"), ("m", i, "d"), ("m", "u", i), (i, i, i)}:
            entries.append(("push_sent", ids, keys.push_sent(*ids)))
        for ids in {(i, "u"), ("c", i), (i, i)}:
            entries.append(("mentions", ids, keys.mentions(*ids)))
            entries.append(("created", ids, keys.created(*ids)))
    return entries


def test_no_key_of_one_id_equals_or_extends_a_key_of_another_id():
    entries = all_keys()
    for (fa, ia, ka), (fb, ib, kb) in itertools.permutations(entries, 2):
        if (fa, ia) == (fb, ib):
            continue
        assert ka != kb, (fa, ia, fb, ib, ka)
        if ia != ib:  # the keys of one id may extend each other: presence:{a}, presence:{a}:lease
            assert not kb.startswith(ka), (fa, ia, ka, fb, ib, kb)


def test_a_user_named_like_another_users_lease_gets_its_own_keys():
    assert keys.presence("alice:lease") != keys.presence_lease("alice")
    assert not keys.presence_lease("alice").startswith(keys.presence("alice:lease"))
    assert keys.push_sent("m", "a:b", "c") != keys.push_sent("m", "a", "b:c")


def test_ids_in_the_user_alphabet_read_as_themselves():
    assert keys.presence("alice") == "presence:{alice}"
    assert keys.presence_lease("bob.smith-2") == "presence:{bob.smith-2}:lease"
    assert keys.conversation_members("g_0a1b") == "conv:{g_0a1b}:members"


@pytest.mark.parametrize("ident", HOSTILE)
def test_an_encoded_id_holds_no_separator_or_glob_character(ident):
    inner = keys.tag(ident)[1:-1]
    assert not set(inner) & set(":{}*?[]\\ |"), inner
    assert re.fullmatch(keys.TAGGED, keys.tag(ident))


@pytest.mark.parametrize("module,mine", [
    (presence, [keys.presence]),
    (conversations, [keys.conversation, keys.conversation_members, keys.conversation_former,
                     keys.conversation_last, keys.user_conversations]),
    (receipts, [keys.receipts]),
])
def test_owned_keys_are_exactly_the_projections_own(module, mine):
    for ident in HOSTILE:
        for family, build in ONE_ID.items():
            key = build(ident)
            assert bool(module.OWNED_KEYS.fullmatch(key)) == (build in mine), (module.__name__, family, key)
    for family, _, key in all_keys():
        if family in ("presence_live", "push_sent"):
            assert not module.OWNED_KEYS.fullmatch(key), key


def test_the_projections_use_these_keys():
    from projections import media
    assert presence._status("alice:lease") != presence._lease("alice")
    assert conversations._meta("x:members") != conversations._members("x")
    assert media._key("x:sent") != media._sent("x")
    assert receipts._key("x") == keys.receipts("x") and presence._lease("a") == keys.presence_lease("a")


@pytest.mark.parametrize("module", [presence, conversations, receipts])
def test_scan_patterns_find_every_owned_key(module):
    def glob(pattern):  # Redis SCAN MATCH: only * matters in these patterns
        return re.compile(".*".join(map(re.escape, pattern.split("*"))), re.S)
    for _, _, key in all_keys():
        if module.OWNED_KEYS.fullmatch(key):
            assert any(glob(p).fullmatch(key) for p in module.SCAN_PATTERNS), key


def test_the_plain_id_shortcut_encodes_exactly_as_percent_encoding_does():
    import random
    from urllib.parse import quote

    from chat.keys import tag

    alphabet = "abcXYZ019_.-~ %{}:*?[]\\\n\tévé👋/+="
    draw = random.Random(7)
    for _ in range(5_000):
        ident = "".join(draw.choice(alphabet) for _ in range(draw.randrange(0, 12)))
        assert tag(ident) == "{" + quote(ident, safe="") + "}", ident

from chat.ids import direct_conversation_id, is_direct_id, is_media_id, new_group_id, new_media_id


def test_direct_id_is_the_same_whoever_asks():
    assert direct_conversation_id("alice", "bob") == direct_conversation_id("bob", "alice")
    assert is_direct_id(direct_conversation_id("alice", "bob"))


def test_direct_ids_differ_per_pair_and_do_not_collide_on_concatenation():
    assert direct_conversation_id("alice", "bob") != direct_conversation_id("alice", "carol")
    assert direct_conversation_id("ab", "c") != direct_conversation_id("a", "bc")


def test_group_ids_are_fresh_and_not_direct():
    a, b = new_group_id(), new_group_id()
    assert a != b and not is_direct_id(a)


def test_media_ids_are_32_lowercase_hex_digits():
    assert is_media_id(new_media_id())
    for bad in ("", "x", new_media_id().upper(), new_media_id() + ":sent", new_media_id()[:31], "../" + "0" * 29,
                new_media_id() + "\n"):
        assert not is_media_id(bad), bad


def test_a_users_idempotency_key_names_one_group_and_one_medium():
    from chat.ids import keyed_group_id, keyed_id

    assert keyed_group_id("alice", "k1") == keyed_group_id("alice", "k1")  # a retry: the same group
    assert keyed_group_id("alice", "k1") != keyed_group_id("alice", "k2")  # another key: another group
    assert keyed_group_id("alice", "k1") != keyed_group_id("bob", "k1")  # keys are per user
    assert keyed_group_id("ab", "c") != keyed_group_id("a", "bc")  # no ambiguity at the seam
    assert keyed_group_id("alice", "k1").startswith("g_") and not is_direct_id(keyed_group_id("alice", "k1"))
    assert len(keyed_group_id("alice", "k1")) == len(new_group_id())
    assert is_media_id(keyed_id("media", "alice", "k1")) and keyed_id("media", "alice", "k1") != keyed_id(
        "group", "alice", "k1")

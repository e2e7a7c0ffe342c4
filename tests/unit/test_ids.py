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

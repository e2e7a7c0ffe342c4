import unicodedata

import pytest

from chat.errors import BadRequest
from chat.identity import MAX_USER_ID, check_device_id, check_user_id, check_user_ids, user_id_problem

GOOD = ["alice", "bob-1a2b3c", "a", "0", "carol.smith", "d_e", "eve@example.org", "x" * MAX_USER_ID]
BAD = [" alice", "alice ", "alice\u202e", "\u202ealice", "al\u200bice", "al\u00adice", "Alice", "ALICE",
       "\uff41lice", "\u0430lice",  # fullwidth a, Cyrillic a
       "ali\u0301ce", "al ice", "a\tb", "a\nb", "a\x00", "alice:lease", "{alice}", "a*", "a,b", "a|d",
       "a/b", "-alice", ".alice", "@alice", "_alice", "", "x" * (MAX_USER_ID + 1), None, 5, ["alice"]]


@pytest.mark.parametrize("user_id", GOOD)
def test_user_ids_of_the_alphabet_pass_unchanged(user_id):
    assert check_user_id(user_id) == user_id


@pytest.mark.parametrize("user_id", GOOD)
def test_every_accepted_id_is_its_own_nfkc_casefold(user_id):
    assert unicodedata.normalize("NFKC", user_id.casefold()) == user_id


@pytest.mark.parametrize("user_id", BAD)
def test_look_alikes_and_malformed_ids_are_refused(user_id):
    assert user_id_problem(user_id) is not None
    with pytest.raises(BadRequest):
        check_user_id(user_id)


def test_the_refusal_names_the_field_and_escapes_the_value():
    with pytest.raises(BadRequest) as err:
        check_user_id("alice\u202e", "members")
    assert err.value.message.startswith("members:") and "\\u202e" in err.value.message
    assert "\u202e" not in err.value.message
    assert "lowercase" in user_id_problem("Alice")


def test_lists_are_checked_one_by_one():
    assert check_user_ids(["alice", "bob"], "members") == ["alice", "bob"]
    for bad in (["alice", " bob"], "alice", [None]):
        with pytest.raises(BadRequest):
            check_user_ids(bad, "members")


@pytest.mark.parametrize("device_id", ["d1", "Web-1a2B.c_d", "x" * 128])
def test_device_ids(device_id):
    assert check_device_id(device_id) == device_id


@pytest.mark.parametrize("device_id", ["", "d 1", "d\u202e", "d:1", "d{1}", "x" * 129, None, "\u0501"])
def test_bad_device_ids(device_id):
    with pytest.raises(BadRequest):
        check_device_id(device_id)

"""Words, normalisation and highlights of search (projections/search_text.py, search.py)."""

from __future__ import annotations

import unicodedata

import pytest

from projections.search import MAX_LIMIT, Query, SearchHit, highlights, index_words, parse_query, search_plan
from projections.search_text import _composes_back, normalise, tokens, words


def marked(body: str, q: str) -> list[str]:
    """The highlighted parts of ``body`` for ``q``, as text (what a client would bold)."""
    query = parse_query(q)
    assert query is not None
    return [body[start:end] for start, end in highlights(body, query)]


def test_words_are_unicode_letters_marks_and_digits() -> None:
    assert words("Hello, world! it's 2026_12") == ["hello", "world", "it", "s", "2026", "12"]
    assert words("naïve café — über") == ["naïve", "café", "über"]
    assert words("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]  # vowel signs are marks: one word each
    assert words("😀🎉 👍🏽") == []


def test_han_and_hiragana_are_one_word_per_character() -> None:
    assert words("東京に行く") == ["東", "京", "に", "行", "く"]
    assert words("カタカナ") == ["カタカナ"]  # Katakana runs stay one word, as in UAX #29


def test_normalisation_is_nfkc_and_full_case_folding() -> None:
    assert words("ﬁle ＦＵＬＬ Ⅻ") == ["file", "full", "xii"]
    assert words("Straße STRASSE") == ["strasse", "strasse"]
    assert words("ΣΊΣΥΦΟΣ σίσυφος") == ["σίσυφοσ", "σίσυφοσ"]
    assert words("İstanbul") == ["i\u0307stanbul"]  # full folding keeps the dot as a mark
    assert words("cafe\u0301") == words("caf\u00e9") == ["café"]  # composed either way


def test_tokens_map_normalised_words_back_to_the_original() -> None:
    body = "ﬁle Straße"
    file, strasse = tokens(body)
    assert (file.text, file.start, file.end) == ("file", 0, 3)
    assert file.prefix_end(1) == 1  # "f" is inside the one code point "ﬁ": all of it
    assert (strasse.text, body[strasse.start : strasse.end]) == ("strasse", "Straße")
    assert [strasse.prefix_end(n) for n in (4, 5, 6, 7)] == [8, 9, 9, 10]  # "ß" is 8..9


def test_segments_agree_with_normalising_the_whole_text() -> None:
    for text in ["cafe\u0301 x", "\u1112\u1161\u11ab\u1100\u1173\u11af", "ㅎㅏㄴ", "ஓ கொ", "İI ǅ ﬃ ẛ̣"]:
        assert "".join(t.text for t in tokens(text)) == "".join(
            w for w in words(normalise(text))
        ), text


def test_composes_back_holds_hangul_and_indic_second_halves() -> None:
    composes = _composes_back()
    assert {"\u1161", "\u11a8", "\u0bbe", "\u314f"} <= composes  # jamo V, T; Tamil AA; compat jamo
    assert not ({"a", "e", "\u3131"} & composes)  # a leading consonant starts a segment
    assert all(unicodedata.combining(ch) == 0 for ch in composes)


def test_query_all_but_last_whole_and_last_a_prefix() -> None:
    assert parse_query("  Hello  WOR") == Query(whole=("hello",), prefix="wor")
    assert parse_query("a a b") == Query(whole=("a",), prefix="b")
    assert parse_query("!!! 😀") is None and parse_query("") is None
    query = parse_query("hello wor")
    assert query is not None
    assert query.matches(["world", "hello"])
    assert not query.matches(["world", "helloo"])  # a word that is not last must be whole
    assert not query.matches(["hello"])  # every word is required
    assert not query.matches(["sword", "hello"])  # a prefix, not a substring


def test_highlights_whole_words_and_the_prefix_only() -> None:
    assert marked("Hello world, hello WORLDS", "hello wor") == ["Hello", "wor", "hello", "WOR"]
    assert highlights("hello world", Query(("hello",), "world")) == [(0, 5), (6, 11)]
    assert marked("helloworld", "hell") == ["hell"]  # the prefix of the word, not the word


@pytest.mark.parametrize(
    ("body", "q", "expected"),
    [
        ("a ﬁle here", "fi", ["ﬁ"]),  # one code point normalises to two letters
        ("a ﬁle here", "file", ["ﬁle"]),
        ("die Straße", "strass", ["Straß"]),  # "ß" is "ss": half of it takes all of it
        ("die Straße", "STRASSE", ["Straße"]),
        ("İstanbul'da", "İstanbul", ["İstanbul"]),  # folds to 9 code points from 8
        ("İstanbul", "i", ["İ"]),
        ("😀 café 👍🏽 caf", "caf", ["caf", "caf"]),  # emoji before: offsets still in code points
        ("cafe\u0301 ok", "café", ["cafe\u0301"]),  # combining acute: the mark is in the word
        ("cafe\u0301 ok", "caf", ["caf"]),
        ("ＦＵＬＬ width", "full", ["ＦＵＬＬ"]),
        ("👨‍👩‍👧 family", "fam", ["fam"]),
        ("東京都", "京", ["京"]),
    ],
)
def test_highlights_are_offsets_into_the_original_body(body: str, q: str, expected: list[str]) -> None:
    assert marked(body, q) == expected


def test_highlight_offsets_are_code_points() -> None:
    body = "😀 ﬁle"
    query = parse_query("file")
    assert query is not None
    assert highlights(body, query) == [(2, 5)]  # UTF-16 would say (3, 6)


def test_index_words_are_distinct_in_order() -> None:
    assert index_words("b a B c a") == ["b", "a", "c"]
    assert index_words("") == [] and index_words("😀 !!") == []


def test_search_plan_bounds_and_scopes() -> None:
    plan = search_plan({"c1": None, "c2": 5}, "x", before=None, limit=500, now_ms=10_000, retention_ms=1_000)
    assert plan is not None
    assert plan.limit == MAX_LIMIT and plan.sent_after == 9_000
    assert plan.allows("c1", 10**12) and plan.allows("c2", 5)
    assert not plan.allows("c2", 6) and not plan.allows("c3", 1)
    assert plan.hit("c1", 1, "x", 9_000) is None  # sent_at + retention <= now: expired
    assert plan.hit("c1", 1, "x", 9_001) is not None
    assert plan.hit("c1", 1, "y", 9_500) is None  # does not match
    assert search_plan({}, "x", before=None, limit=5, now_ms=0, retention_ms=1) is None
    assert search_plan({"c": None}, " ", before=None, limit=5, now_ms=0, retention_ms=1) is None
    with pytest.raises(ValueError):
        search_plan({"c": None}, "x", before=None, limit=0, now_ms=0, retention_ms=1)


def test_finish_orders_newest_first_ties_by_conversation_and_seq() -> None:
    plan = search_plan({"a": None, "b": None}, "x", before=None, limit=2, now_ms=100, retention_ms=1_000)
    assert plan is not None
    hits = [SearchHit("a", 1, "x", 50), SearchHit("b", 1, "x", 50), SearchHit("a", 2, "x", 50),
            SearchHit("a", 3, "x", 40)]
    page = plan.finish(hits)
    assert [(h.conversation_id, h.seq) for h in page.results] == [("b", 1), ("a", 2)]
    assert page.has_more is True


def test_a_page_never_ends_inside_a_group_of_equal_sent_at() -> None:
    plan = search_plan({"a": None}, "x", before=None, limit=2, now_ms=100, retention_ms=1_000)
    assert plan is not None
    page = plan.finish([SearchHit("a", 9, "x", 60), SearchHit("a", 1, "x", 50), SearchHit("a", 2, "x", 50),
                        SearchHit("a", 3, "x", 40)])
    # before=60 then finds both messages at 50; a page of [9, 2] would lose 1 to before=50.
    assert ([h.seq for h in page.results], page.has_more) == ([9], True)
    page = plan.finish([SearchHit("a", 9, "x", 60), SearchHit("a", 1, "x", 50), SearchHit("a", 3, "x", 40)])
    assert ([h.seq for h in page.results], page.has_more) == ([9, 1], True)

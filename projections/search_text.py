"""The words of a message or a query, as search compares them (protocol 1.1, "Search").

A word is a run of letters, marks and digits (Unicode categories L, M, N), except that each
Han ideograph and each Hiragana character is a word of its own, as UAX #29 has them without a
dictionary. Words are compared after NFKC normalisation and Unicode case folding
(``NFKC(casefold(NFKC(s)))``), so "ﬁle" is "file" and "Straße" is "strasse".

Normalisation can change lengths ("ﬁ" is two letters, "İ" folds to "i" and a combining dot),
so it runs over segments of the original text: a segment is one character with the marks that
follow it (anything that can compose with what precedes it, such as Hangul vowel jamo, stays in
the segment too). Each normalised character then knows the segment it came from, and a word or
a prefix of one maps back to whole code points of the original body: ``[start, end)``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache

_ASCII_WORD = re.compile(r"[0-9a-z]+")


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a text: its normalised form, where it starts in the original, and where in
    the original each of its normalised characters ends (so a prefix maps back too)."""

    text: str
    start: int
    ends: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.ends[-1]

    def prefix_end(self, length: int) -> int:
        """Where the first ``length`` normalised characters end in the original text."""
        return self.ends[length - 1]


def normalise(text: str) -> str:
    """NFKC and Unicode case folding, closed under NFKC again."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def words(text: str) -> list[str]:
    """The normalised words of ``text``, in order, repeats kept."""
    if text.isascii():
        return _ASCII_WORD.findall(text.lower())
    return [t.text for t in tokens(text)]


def tokens(text: str) -> list[Token]:
    """The words of ``text`` with their places in it (see the module's docstring)."""
    if text.isascii():
        return [
            Token(m.group(), m.start(), tuple(range(m.start() + 1, m.end() + 1)))
            for m in _ASCII_WORD.finditer(text.lower())
        ]
    found: list[Token] = []
    chars: list[str] = []
    start = 0
    ends: list[int] = []

    def flush() -> None:
        if chars:
            found.append(Token("".join(chars), start, tuple(ends)))
            chars.clear()
            ends.clear()

    for seg_start, seg_end, norm in _segments(text):
        for ch in norm:
            kind = _kind(ch)
            if kind == _SEPARATOR:
                flush()
                continue
            if kind == _SINGLE:
                flush()
            if not chars:
                start = seg_start
            chars.append(ch)
            ends.append(seg_end)
            if kind == _SINGLE:
                flush()
    flush()
    return found


def _segments(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, normalised)`` for each segment of ``text``: a character and what may
    combine with it."""
    composes_back = _composes_back()
    bounds = [i for i, ch in enumerate(text) if i == 0 or not (unicodedata.combining(ch) or ch in composes_back)]
    bounds.append(len(text))
    return [(a, b, _normalise_segment(text[a:b])) for a, b in zip(bounds, bounds[1:])]


@lru_cache(maxsize=65_536)
def _normalise_segment(segment: str) -> str:
    return normalise(segment)


@cache
def _composes_back() -> frozenset[str]:
    """Starters (canonical combining class 0) that NFKC may compose with the character before
    them: second halves of canonical pairs (Indic vowel parts, Hangul vowel and final jamo), and
    every character whose compatibility decomposition begins with one (Hangul compatibility
    jamo). Computed once, in about 0.4 s, from the running Python's Unicode database."""
    second = {chr(cp) for cp in range(0x1161, 0x1176)} | {chr(cp) for cp in range(0x11A8, 0x11C3)}
    for cp in range(0x110000):
        decomposition = unicodedata.decomposition(chr(cp))
        if decomposition and not decomposition.startswith("<"):
            parts = decomposition.split()
            if len(parts) == 2 and unicodedata.combining(tail := chr(int(parts[1], 16))) == 0:
                second.add(tail)
    composes = set()
    for cp in range(0x80, 0x110000):
        decomposed = unicodedata.normalize("NFKD", chr(cp))
        if decomposed and decomposed[0] in second and unicodedata.combining(decomposed[0]) == 0:
            composes.add(chr(cp))
    return frozenset(composes)


_SEPARATOR, _WORD, _SINGLE = 0, 1, 2
# Han ideographs (unified, extensions, compatibility) and Hiragana: one word per character.
_SINGLE_RANGES = ((0x3040, 0x309F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))


@lru_cache(maxsize=65_536)
def _kind(ch: str) -> int:
    cp = ord(ch)
    if any(low <= cp <= high for low, high in _SINGLE_RANGES) and unicodedata.category(ch)[0] == "L":
        return _SINGLE
    return _WORD if unicodedata.category(ch)[0] in "LMN" else _SEPARATOR

"""The one bounds check for seqs from clients (HTTP parameters and frames): signed 64-bit."""

from __future__ import annotations

import pytest

from chat.errors import BadRequest
from gateway.context import MAX_SEQ, seq_value


@pytest.mark.parametrize("value, least", [(1, 1), (MAX_SEQ, 1), (0, 0), (MAX_SEQ, 0)])
def test_seqs_within_bounds_pass(value, least):
    assert seq_value(value, "seq", least=least) == value


@pytest.mark.parametrize("value, least", [
    (2**63, 1), (2**63, 0), (10**23, 0), (0, 1), (-1, 0), (True, 0), (False, 0), (True, 1), (1.0, 1), ("1", 1),
    (None, 1),
])
def test_seqs_out_of_bounds_or_not_integers_are_bad_requests(value, least):
    with pytest.raises(BadRequest):
        seq_value(value, "seq", least=least)

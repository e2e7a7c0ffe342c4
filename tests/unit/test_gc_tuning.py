"""``chat.gc_tuning.tune``: the young generation's threshold from the settings, start-up frozen."""

import gc

from chat.gc_tuning import tune
from chat.settings import Settings


def test_tune_sets_the_young_threshold_and_freezes_what_exists():
    before = gc.get_threshold()
    try:
        tune(Settings.from_env({}, gc_threshold=12_345))
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        tune(Settings.from_env({}, gc_threshold=0))  # 0: Python's own thresholds stay
        assert gc.get_threshold() == (12_345, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_default_is_a_large_young_generation():
    assert Settings.from_env({}).gc_threshold == 50_000

"""Flash-drought products from percentiles, against direct loops over their definitions: the
change over 7, 14 and 28 days and the onset (Ford & Labosier 2017)."""

import numpy as np
import pytest

from model.product import cube as cubes
from model.product import flash, kinds


@pytest.fixture(scope="module")
def percentiles() -> np.ndarray:
    """(cells, days) percentile codes that wander between 0 and 100, a tenth missing."""
    rng = np.random.default_rng(11)
    walk = np.clip(5000 + np.cumsum(rng.normal(0, 700, (40, 400)), axis=1), 0, 10000)
    codes = np.rint(walk).astype(np.int16)
    codes[rng.random(codes.shape) < 0.1] = cubes.FILL
    return codes


@pytest.mark.parametrize("lag", flash.LAGS)
def test_change_is_the_percentile_difference_over_the_lag(percentiles, lag):
    got = flash.change(percentiles, lag)
    assert got.shape == (40, 400 - lag)
    for cell in range(0, 40, 7):
        for t in range(lag, 400):
            now, before = int(percentiles[cell, t]), int(percentiles[cell, t - lag])
            expected = cubes.FILL if cubes.FILL in (now, before) else now - before
            assert got[cell, t - lag] == expected


def test_onset_flags_a_fall_from_above_40_to_below_20_within_20_days(percentiles):
    got = flash.onset(percentiles)
    assert got.shape == (40, 380)
    for cell in range(40):
        for t in range(20, 400):
            today = int(percentiles[cell, t])
            before = [int(v) for v in percentiles[cell, t - 20 : t] if v != cubes.FILL]
            if today == cubes.FILL or not before:
                expected = cubes.FILL
            else:
                expected = int(today < 2000 and max(before) > 4000)
            assert got[cell, t - 20] == expected, (cell, t)
    assert (got == 1).sum() > 20 and (got == 0).sum() > 1000


def test_onset_bounds_are_strict():
    days = np.full(21, 4000, np.int16)
    days[-1] = 1999
    assert flash.onset(days[None])[0, 0] == 0  # 40 is not above 40
    days[5] = 4001
    assert flash.onset(days[None])[0, 0] == 1
    days[-1] = 2000
    assert flash.onset(days[None])[0, 0] == 0  # 20 is not below 20


def test_the_registry_says_which_products_are_percentiles():
    """Drought classes and weekly ranking ask the registry, not the name's suffix: a flash
    product of a percentile is no percentile, nor is a name whose source is not ranked."""
    assert kinds.is_percentile("lstm_percentile") and kinds.is_percentile("fused_percentile")
    assert kinds.percentile_source("fused_percentile") == "fused"
    for name in ("lstm", "lstm_change_7d", "lstm_onset", "smap_percentile", "x_percentile"):
        assert not kinds.is_percentile(name), name

"""Flash drought from percentiles: their change over 1, 2 and 4 weeks (as NASA SPoRT-LIS maps
soil-moisture change) and the onset of a flash drought (Ford & Labosier 2017: a fall from above
the 40th percentile to below the 20th within 20 days).

Definitions, on a product's stored percentile codes (0.01 points, FILL where missing):
    <source>_change_<k>d  percentile(t) - percentile(t - k), k = 7, 14, 28 days; percentile
                          points; missing where either day is
    <source>_onset        1 on a day whose percentile is below 20 while one of the 20 days
                          before it was above 40, else 0; missing where the day's percentile is,
                          or none of the 20 days before it has one
"""

import numpy as np

from model.product import cube as cubes

LAGS = (7, 14, 28)
ONSET_DAYS = 20
ONSET_FROM = 4000  # codes: percentile > 40
ONSET_TO = 2000  # codes: percentile < 20


def change(percentiles: np.ndarray, lag: int) -> np.ndarray:
    """Codes (..., days - lag) of percentile(t) - percentile(t - lag) over (..., days) percentile
    codes, FILL where either is missing."""
    now, before = percentiles[..., lag:], percentiles[..., :-lag]
    missing = (now == cubes.FILL) | (before == cubes.FILL)
    return np.where(missing, cubes.FILL, now.astype(np.int32) - before).astype(np.int32)


def onset(percentiles: np.ndarray) -> np.ndarray:
    """Codes (..., days - ONSET_DAYS): 1 where a day's percentile is below 20 and one of the
    ONSET_DAYS days before it was above 40, 0 where not, FILL where unknown."""
    p = percentiles.astype(np.int32)
    present = p != cubes.FILL
    high = present & (p > ONSET_FROM)
    days = p.shape[-1] - ONSET_DAYS
    was_high = np.zeros((*p.shape[:-1], days), bool)
    any_known = np.zeros((*p.shape[:-1], days), bool)
    for back in range(1, ONSET_DAYS + 1):
        window = slice(ONSET_DAYS - back, ONSET_DAYS - back + days)
        was_high |= high[..., window]
        any_known |= present[..., window]
    today = p[..., ONSET_DAYS:]
    flag = (today < ONSET_TO) & was_high
    known = present[..., ONSET_DAYS:] & any_known
    return np.where(known, flag.astype(np.int32), cubes.FILL).astype(np.int32)

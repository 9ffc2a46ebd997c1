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

import re

import numpy as np

from model.product import cube as cubes

LAGS = (7, 14, 28)
ONSET_DAYS = 20
ONSET_FROM = 4000  # codes: percentile > 40
ONSET_TO = 2000  # codes: percentile < 20
NAME = re.compile(r"^(?P<source>.+)_(?:change_(?P<lag>7|14|28)d|(?P<onset>onset))$")


def parse(product: str) -> tuple[str, int] | None:
    """(source, days looked back) of a change or onset product's name; None for any other."""
    match = NAME.match(product)
    if match is None:
        return None
    return match["source"], ONSET_DAYS if match["onset"] else int(match["lag"])


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


def derive(product: str, percentiles: np.ndarray) -> np.ndarray:
    """A change or onset product's codes from the source's percentile codes over its days and
    the days it looks back (parse's), which it drops."""
    _, lag = parse(product)
    return onset(percentiles) if product.endswith("_onset") else change(percentiles, lag)


def names(percentile_sources: list[str]) -> list[str]:
    """The change and onset products of the sources that have percentiles."""
    return [
        name
        for source in percentile_sources
        for name in (*(f"{source}_change_{k}d" for k in LAGS), f"{source}_onset")
    ]

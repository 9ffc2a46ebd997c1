"""Validation protocols: which days' SMAP trains the first ensemble member and which days score
it (early stopping, the skill `smapx train` reports, the configuration search).

- `tail`: the last `validation_days` of the period. One season, right after the training days:
  on the conus412 year it is February-March, whose skill says little about a whole unseen year.
- `seasons` (the default): `validation_days` split into blocks spread evenly over the period, one
  per season of every year, each with `gap_days` either side that neither train nor score (soil
  moisture a few days apart is strongly correlated, so a target next to a scored day would leak
  it). The forcing of every day stays an input: only targets are held out.

In the twin world, where later years are known, `bench/skill_search.py --protocols tail,seasons`
measures how well each protocol ranks configurations by their skill on unseen years.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from model.errors import InputError

PROTOCOLS = ("seasons", "tail")
SEASONS_PER_YEAR = 4
MIN_BLOCK_DAYS = 5


@dataclass
class Holdout:
    """The first member's split of a training period's days."""

    protocol: str
    fit: np.ndarray  # bool (day,): targets that enter the loss
    scored: np.ndarray  # bool (day,): targets that validation scores
    window_end: int  # training windows lie within days [0, window_end)
    description: str  # the scored days, for people

    def fit_targets(self, y: np.ndarray) -> np.ndarray:
        """(cell, day) targets with every day outside `fit` missing."""
        return np.where(self.fit[None, :], y, np.nan).astype(y.dtype)


def every_day(n_days: int) -> Holdout:
    """No day held out: the split of a member that trains on the whole period (a refit)."""
    return Holdout("none", np.ones(n_days, bool), np.zeros(n_days, bool), n_days, "")


def holdout(
    time: pd.DatetimeIndex, protocol: str, validation_days: int, gap_days: int, window: int
) -> Holdout:
    """The split of a period by a protocol, or a clear error where the period is too short."""
    if protocol not in PROTOCOLS:
        raise InputError(f"validation protocol: one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if validation_days < 1:
        raise InputError(f"validation_days: at least 1, got {validation_days}")
    if protocol == "tail":
        return _tail(time, validation_days, window)
    return _seasons(time, validation_days, gap_days, window)


def _tail(time: pd.DatetimeIndex, validation_days: int, window: int) -> Holdout:
    n_days = len(time)
    if n_days < window + validation_days:
        raise InputError(
            f"training period of {n_days} days is too short for a window "
            f"({window}) plus the validation slice ({validation_days})"
        )
    split = n_days - validation_days
    days = np.arange(n_days)
    return Holdout(
        "tail", days < split, days >= split, split, f"{time[split].date()}..{time[-1].date()}"
    )


def _seasons(time: pd.DatetimeIndex, validation_days: int, gap_days: int, window: int) -> Holdout:
    n_days = len(time)
    n_blocks = SEASONS_PER_YEAR * max(1, round(n_days / 365.25))
    while n_blocks > 1 and _held_days(n_blocks, validation_days, gap_days) > n_days // 2:
        n_blocks -= 1  # a period shorter than a year spans fewer seasons
    length = max(MIN_BLOCK_DAYS, validation_days // n_blocks)
    if n_days < window or _held_days(n_blocks, validation_days, gap_days) > n_days // 2:
        raise InputError(
            f"training period of {n_days} days is too short for {n_blocks} validation block(s) "
            f"of {length} days with {gap_days}-day gaps (and a window of {window} days)"
        )
    fit = np.ones(n_days, bool)
    scored = np.zeros(n_days, bool)
    spans = []
    for k in range(n_blocks):
        first = int(round((k + 0.5) * n_days / n_blocks)) - length // 2
        scored[first : first + length] = True
        fit[max(0, first - gap_days) : first + length + gap_days] = False
        spans.append(f"{time[first].date()}..{time[first + length - 1].date()}")
    return Holdout(
        "seasons",
        fit,
        scored,
        n_days,
        f"{n_blocks} block{'s' if n_blocks > 1 else ''} of {length} days ({', '.join(spans)})",
    )


def _held_days(n_blocks: int, validation_days: int, gap_days: int) -> int:
    """Days out of the loss: the blocks and their gaps."""
    return n_blocks * (max(MIN_BLOCK_DAYS, validation_days // n_blocks) + 2 * gap_days)

"""A wall-clock budget for training (`smapx train --budget 15m`): the first member stops early
within its share, and a further member starts only where its measured cost still fits."""

import re
import time

from model.errors import InputError

UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds of '90s', '15m', '1.5h' or a bare number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not match or float(match[1]) <= 0:
        raise InputError(f"budget: a positive duration such as 900s, 15m or 1.5h, got {text!r}")
    return float(match[1]) * UNITS[match[2] or "s"]


class Budget:
    """Time left of a training run; an unlimited one (0 seconds) allows everything."""

    def __init__(self, seconds: float, members: int):
        self.seconds = seconds
        self.members = members
        self.started = time.perf_counter()

    @property
    def limited(self) -> bool:
        return self.seconds > 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def first_member_allows(self, next_epoch_seconds: float) -> bool:
        """Whether the first member may run one more epoch within its share of the budget,
        which leaves the other members the time of as many epochs as it ran."""
        if not self.limited:
            return True
        return self.elapsed() + next_epoch_seconds <= self.seconds / self.members

    def allows(self, seconds: float) -> bool:
        """Whether work of this many seconds still fits."""
        return not self.limited or self.elapsed() + seconds <= self.seconds

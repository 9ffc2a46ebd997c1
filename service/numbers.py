"""Numbers in query and path parameters and in CSV bodies, read strictly: Python's int() and
float() (and pydantic after them) take `1_0` as 10, `٣` as 3 and `infinity` as a number, so a
typo or a probe reads as a valid request. Here a number is ASCII digits with an optional sign,
point and exponent, nothing else."""

import re
from typing import Annotated

from pydantic import BeforeValidator

INTEGER = re.compile(r"[+-]?[0-9]+")
DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def plain(pattern: re.Pattern, kind: str):
    def check(value):
        if isinstance(value, str) and not pattern.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not {kind}")
        return value

    return check


def decimal(text: str) -> float:
    """A float from text that is a plain decimal number; ValueError otherwise."""
    return float(plain(DECIMAL, "a decimal number")(text))


Integer = Annotated[int, BeforeValidator(plain(INTEGER, "an integer (digits only)"))]
Decimal = Annotated[float, BeforeValidator(plain(DECIMAL, "a decimal number"))]

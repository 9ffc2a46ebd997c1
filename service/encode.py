"""Series values as text, fast: the cube stores int16 in units of 1e-4 m3/m3, so every value a
response can hold is one of 65,536 strings, formatted once here and looked up per request. Each
string is the stored value in decimal at the stored precision (`0.1168`, never the float32
`0.116799995`), so clients get exactly what the cube holds."""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from model.product import cube as cubes

_OFFSET = 32768
_CODES = np.arange(-32768, 32768)
_DECIMALS = round(-np.log10(cubes.SCALE))
JSON_TEXT = np.array(
    [f"{c * cubes.SCALE:.{_DECIMALS}f}".rstrip("0").rstrip(".") for c in _CODES.tolist()],
    dtype=object,
)
JSON_TEXT[cubes.FILL + _OFFSET] = "null"
CSV_TEXT = JSON_TEXT.copy()
CSV_TEXT[cubes.FILL + _OFFSET] = ""
CSV_MIDDLE = np.array([t + "," for t in CSV_TEXT], dtype=object)
CSV_LAST = np.array([t + "\n" for t in CSV_TEXT], dtype=object)


@dataclass(frozen=True)
class Text:
    """The strings of every code for one kind of value: JSON, and CSV mid-row and row-end."""

    json: np.ndarray
    middle: np.ndarray
    last: np.ndarray

    @classmethod
    def of(cls, scale: float) -> "Text":
        """Codes worth `scale` each, in decimal at the scale's precision (`49.24`, never the
        float32 `49.239998`)."""
        decimals = max(0, round(-np.log10(scale)))
        json = np.array([_decimal(c * scale, decimals) for c in _CODES.tolist()], dtype=object)
        json[json == "-0"] = "0"
        json[cubes.FILL + _OFFSET] = "null"
        csv = json.copy()
        csv[cubes.FILL + _OFFSET] = ""
        return cls(
            json,
            np.array([t + "," for t in csv], dtype=object),
            np.array([t + "\n" for t in csv], dtype=object),
        )


def _decimal(value: float, decimals: int) -> str:
    """The value with `decimals` decimals, trailing zeros of the fraction dropped (never those
    of a whole number: 10 stays 10)."""
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text


SOIL_MOISTURE = Text(JSON_TEXT, CSV_MIDDLE, CSV_LAST)


@lru_cache(maxsize=8)
def text_of(scale: float) -> Text:
    """The strings of codes worth `scale` each (a product kind's, model.product.kinds)."""
    return SOIL_MOISTURE if scale == cubes.SCALE else Text.of(scale)


def json_array(codes: np.ndarray, text: Text = SOIL_MOISTURE) -> str:
    return "[" + ",".join(text.json[codes.astype(np.int32) + _OFFSET]) + "]"


def csv_rows(
    lead: np.ndarray,
    columns: list[np.ndarray],
    texts: list[Text] | None = None,
    repeated: str = "",
) -> str:
    """CSV rows: `repeated` (cells every row starts with, e.g. where a series is), `lead` (each
    row's own first cells), both with their trailing comma, then one column of codes per product
    (in units of `texts`, default 1e-4 m3/m3). Cells are interleaved and joined once, with no
    per-row strings: the repeated cells are one string object on every row."""
    texts = texts or [SOIL_MOISTURE] * len(columns)
    leads = [repeated, lead] if repeated else [lead]
    cells = np.empty((len(lead), len(leads) + len(columns)), dtype=object)
    for k, cell in enumerate(leads):
        cells[:, k] = cell
    for k, (codes, text) in enumerate(zip(columns, texts, strict=True)):
        table = text.last if k == len(columns) - 1 else text.middle
        cells[:, len(leads) + k] = table[codes.astype(np.int32) + _OFFSET]
    return "".join(cells.ravel())

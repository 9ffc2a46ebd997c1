"""Series values as text, fast: the cube stores int16 in units of 1e-4 m3/m3, so every value a
response can hold is one of 65,536 strings, formatted once here and looked up per request. Each
string is the stored value in decimal at the stored precision (`0.1168`, never the float32
`0.116799995`), so clients get exactly what the cube holds."""

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


def fused_codes(lstm: np.ndarray, noah: np.ndarray, weight) -> np.ndarray:
    """Codes (1e-4 m3/m3) of w * lstm + (1 - w) * noah, FILL where either is missing."""
    value = np.rint(np.asarray(weight, np.float64) * lstm + (1.0 - np.asarray(weight)) * noah)
    missing = (lstm == cubes.FILL) | (noah == cubes.FILL)
    return np.where(missing, cubes.FILL, value).astype(np.int32)


def json_array(codes: np.ndarray) -> str:
    return "[" + ",".join(JSON_TEXT[codes.astype(np.int32) + _OFFSET]) + "]"


def csv_rows(lead: np.ndarray, columns: list[np.ndarray]) -> str:
    """CSV rows: `lead` holds each row's first cells with their trailing comma, then one column
    of codes per product. Cells are interleaved and joined once, with no per-row strings."""
    cells = np.empty((len(lead), 1 + len(columns)), dtype=object)
    cells[:, 0] = lead
    for k, codes in enumerate(columns):
        table = CSV_LAST if k == len(columns) - 1 else CSV_MIDDLE
        cells[:, k + 1] = table[codes.astype(np.int32) + _OFFSET]
    return "".join(cells.ravel())

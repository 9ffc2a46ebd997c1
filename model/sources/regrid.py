"""Area-weighted aggregation from a regular lat/lon grid (NLDAS-2, 0.125 degree) to the cells of
an EASE2 grid (36 km, 9 km, ...).

EASE-Grid 2.0 (EPSG:6933) is a cylindrical equal-area projection: x depends on longitude only and
y on latitude only. A lat/lon cell is therefore an exact rectangle in EASE2 metres, and its overlap
with an EASE2 cell is the product of a 1-D overlap in x and one in y - an exact area, not a sampled
one. The weights form a sparse (cell, lat*lon) matrix, built once per grid pair and reused every
day.
"""

from functools import lru_cache

import numpy as np
from scipy import sparse

from model import grid
from model.errors import InputError


def centre_edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of a regular axis from its (ascending) cell centres."""
    centres = np.asarray(centres, np.float64)
    if centres.size < 2:
        raise InputError("a lat/lon grid needs at least two cells per axis")
    step = np.diff(centres)
    if (step <= 0).any() or not np.allclose(step, step[0], rtol=1e-6, atol=1e-9):
        raise InputError("lat/lon centres must be regular and ascending")
    return np.concatenate([centres - step[0] / 2, [centres[-1] + step[0] / 2]])


def _overlap(src_edges: np.ndarray, dst_lo: np.ndarray, dst_hi: np.ndarray) -> np.ndarray:
    """Dense (dst, src) lengths of overlap between 1-D intervals; src edges ascending."""
    lo = np.maximum(src_edges[None, :-1], dst_lo[:, None])
    hi = np.minimum(src_edges[None, 1:], dst_hi[:, None])
    return np.clip(hi - lo, 0.0, None)


def _top_nonzero(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the indices and values of its nonzeros, padded with zeros to a common width."""
    width = max(int((dense > 0).sum(1).max()), 1)
    idx = np.argsort(-dense, axis=1, kind="stable")[:, :width]
    return idx, np.take_along_axis(dense, idx, axis=1)


def _row_span(rows: np.ndarray, on: grid.Grid) -> tuple[np.ndarray, np.ndarray]:
    """EASE2 y extent (bottom, top) of grid rows."""
    top = on.row_to_y(rows) + on.cell_size / 2
    return top - on.cell_size, top


def _col_span(cols: np.ndarray, on: grid.Grid) -> tuple[np.ndarray, np.ndarray]:
    """EASE2 x extent (left, right) of grid columns."""
    left = on.col_to_x(cols) - on.cell_size / 2
    return left, left + on.cell_size


def _cell_overlaps(src_edges, index, span, on: grid.Grid) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the source intervals it overlaps and the lengths; computed once per distinct
    grid row (or column), since every cell in it has the same 1-D overlaps."""
    unique, inverse = np.unique(index, return_inverse=True)
    idx, length = _top_nonzero(_overlap(src_edges, *span(unique, on)))
    return idx[inverse], length[inverse]


@lru_cache(maxsize=8)
def _weights(
    lat_key: tuple, lon_key: tuple, rows_key: bytes, cols_key: bytes, on: grid.Grid
) -> sparse.csr_matrix:
    lat = np.linspace(*lat_key)
    lon = np.linspace(*lon_key)
    rows = np.frombuffer(rows_key, np.int64)
    cols = np.frombuffer(cols_key, np.int64)
    lat_edges, lon_edges = centre_edges(lat), centre_edges(lon)
    x_edges = grid.lonlat_to_xy(lon_edges, np.zeros_like(lon_edges))[0]
    y_edges = grid.lonlat_to_xy(np.zeros_like(lat_edges), lat_edges)[1]
    (iy, vy), (ix, vx) = (
        _cell_overlaps(y_edges, rows, _row_span, on),
        _cell_overlaps(x_edges, cols, _col_span, on),
    )
    data = (vy[:, :, None] * vx[:, None, :]).reshape(len(rows), -1)
    index = (iy[:, :, None] * len(lon) + ix[:, None, :]).reshape(len(rows), -1)
    cell = np.repeat(np.arange(len(rows)), data.shape[1])
    keep = data.ravel() > 0
    matrix = sparse.coo_matrix(
        (data.ravel()[keep], (cell[keep], index.ravel()[keep])),
        shape=(len(rows), len(lat) * len(lon)),
    )
    return matrix.tocsr()


class Regridder:
    """Area-weighted mean of a regular lat/lon grid over each of a list of cells of an EASE2
    grid (`on`, 36 km by default).

    A cell's value is the mean over the part of it that the source covers with valid (finite)
    values, weighted by overlap area; a cell with no valid overlap is NaN. Over cells the source
    covers fully, area times value summed over cells equals the source's own area integral.
    """

    def __init__(self, lat: np.ndarray, lon: np.ndarray, rows, cols, on: grid.Grid = grid.DEFAULT):
        lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
        centre_edges(lat), centre_edges(lon)
        self.shape = (len(lat), len(lon))
        rows = np.ascontiguousarray(rows, np.int64)
        cols = np.ascontiguousarray(cols, np.int64)
        self.weights = _weights(
            (lat[0], lat[-1], len(lat)),
            (lon[0], lon[-1], len(lon)),
            rows.tobytes(),
            cols.tobytes(),
            on,
        )

    @property
    def overlap_area(self) -> np.ndarray:
        """Area (m2) of each EASE2 cell that the source grid covers."""
        return np.asarray(self.weights.sum(axis=1)).ravel()

    def __call__(self, fields: np.ndarray) -> np.ndarray:
        """(k, lat, lon) or (lat, lon) fields -> (k, cell) or (cell,) area-weighted means."""
        fields = np.asarray(fields, np.float64)
        single = fields.ndim == 2
        flat = fields.reshape(-1, self.shape[0] * self.shape[1]).T
        valid = np.isfinite(flat)
        total = self.weights @ np.where(valid, flat, 0.0)
        area = self.weights @ valid.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(area > 0, total / area, np.nan).T.astype(np.float32)
        return mean[0] if single else mean

"""Normalisation fitted on the training period only, saved with the checkpoint.

Forcing and static attributes are z-scored per variable; precipitation is first transformed by
log10(sqrt(p) + 0.1), since its raw z-scores reach the hundreds on storm days. Missing static
values become the training mean (0 after scaling); missing forcing days become 0 after scaling.

A nowcast model (observation_latency > 0, Fang & Shen 2020) takes two more inputs: the latest
SMAP retrieval known on day t, i.e. of a day at or before t - latency (scaled as the target),
and its age in days over the look-back. Where none lies within the look-back the value is 0
(the mean) and the age NO_OBSERVATION_AGE, so the network follows the forcing alone.
"""

from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

from model.dataset import PRECIP_VARIABLES
from model.errors import InputError

LOOKBACK_DAYS = 15
NO_OBSERVATION_AGE = 2.0  # scaled age input where no retrieval lies within the look-back


def transform_forcing(values: np.ndarray, names: list[str]) -> np.ndarray:
    """Apply per-variable transforms (precipitation only) to a (..., variable) array."""
    out = np.array(values, np.float32, copy=True)
    for i, name in enumerate(names):
        if name in PRECIP_VARIABLES:
            out[..., i] = np.log10(np.sqrt(np.clip(out[..., i], 0, None)) + 0.1)
    return out


def _mean_std(values: np.ndarray, axis) -> tuple[np.ndarray, np.ndarray]:
    mean = np.nanmean(values, axis=axis)
    std = np.nanstd(values, axis=axis)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


@dataclass
class Normalizer:
    """Scaling of inputs and target; round-trips through JSON with the checkpoint."""

    forcing_names: list[str]
    static_names: list[str]
    forcing_mean: list[float]
    forcing_std: list[float]
    static_mean: list[float]
    static_std: list[float]
    target_mean: float
    target_std: float
    observation_latency: int = 0
    observation_lookback: int = LOOKBACK_DAYS

    @classmethod
    def fit(cls, train: xr.Dataset, observation_latency: int = 0) -> "Normalizer":
        """Statistics of the training period of an input dataset."""
        names = [str(v) for v in train["variable"].values]
        static_names = [str(v) for v in train["static_variable"].values]
        forcing = transform_forcing(train["forcing"].values, names)
        f_mean, f_std = _mean_std(forcing.reshape(-1, len(names)), axis=0)
        s_mean, s_std = _mean_std(train["static"].values, axis=0)
        target = train["target"].values
        if not np.isfinite(target).any():
            raise InputError("the training period has no valid SMAP observations")
        t_mean, t_std = _mean_std(target.ravel(), axis=0)
        return cls(
            names,
            static_names,
            f_mean.tolist(),
            f_std.tolist(),
            s_mean.tolist(),
            s_std.tolist(),
            float(t_mean),
            float(t_std),
            observation_latency,
        )

    @property
    def n_inputs(self) -> int:
        observed = 2 if self.observation_latency else 0
        return len(self.forcing_names) + len(self.static_names) + observed

    def inputs(self, ds: xr.Dataset, cells=None, days=None) -> np.ndarray:
        """Normalised network inputs (cell, time, n_inputs) float32 for an input dataset, or for
        some of its cells and days (index arrays): the model's variables, cells and days are
        gathered in one copy, the rest of the dataset never touched."""
        self.check(ds)
        where = {
            "variable": ds.indexes["variable"].get_indexer(self.forcing_names),
            "cell": cells,
            "time": days,
        }
        forcing = ds["forcing"].isel(
            {dim: index for dim, index in where.items() if index is not None}
        )
        static = ds["static"].isel(
            static_variable=ds.indexes["static_variable"].get_indexer(self.static_names),
            cell=slice(None) if cells is None else cells,
        )
        observed = self.observed(ds, cells, days) if self.observation_latency else None
        return self.scale(forcing.values, static.values, observed)

    def observed(self, ds: xr.Dataset, cells=None, days=None) -> np.ndarray:
        """(cell, day, 2) nowcast inputs: the latest SMAP retrieval of a day at or before
        day - latency, scaled, and its age; days at or after day - latency + 1 are never read."""
        days = np.arange(ds.sizes["time"]) if days is None else np.asarray(days)
        latency, lookback = self.observation_latency, self.observation_lookback
        first = max(int(days.min()) - latency - lookback, 0)
        stop = max(int(days.max()) - latency + 1, first)
        target = (
            ds["target"]
            .isel(time=slice(first, stop), cell=slice(None) if cells is None else cells)
            .values
        )
        index = np.where(np.isfinite(target), np.arange(len(target))[:, None], -1)
        latest = np.maximum.accumulate(index, axis=0) if len(target) else index
        known_at = days - latency - first
        seen = np.full((len(days), target.shape[1]), -1)
        reachable = known_at >= 0
        seen[reachable] = latest[known_at[reachable]]
        age = (days[:, None] - first - seen).astype(np.float32)
        fresh = (seen >= 0) & (age <= lookback)
        record = target if len(target) else np.full((1, target.shape[1]), np.nan, np.float32)
        value = record[np.clip(seen, 0, None), np.arange(target.shape[1])]
        out = np.empty((target.shape[1], len(days), 2), np.float32)
        out[:, :, 0] = np.where(fresh, self.scale_target(value), 0.0).T
        out[:, :, 1] = np.where(fresh, age / np.float32(lookback), NO_OBSERVATION_AGE).T
        return out

    def scale(
        self, forcing: np.ndarray, static: np.ndarray, observed: np.ndarray | None = None
    ) -> np.ndarray:
        """(time, cell, var) forcing and (cell, var) static [and (cell, time, 2) nowcast inputs]
        -> (cell, time, n_inputs) inputs. In place where it can: an extension scales hundreds of
        MB of inputs at once."""
        f = transform_forcing(forcing, self.forcing_names)
        f -= np.float32(self.forcing_mean)
        f /= np.float32(self.forcing_std)
        np.nan_to_num(f, copy=False, nan=0.0)
        s = (np.asarray(static, np.float32) - np.float32(self.static_mean)) / np.float32(
            self.static_std
        )
        out = np.empty((f.shape[1], f.shape[0], self.n_inputs), np.float32)
        out[:, :, : f.shape[2]] = f.transpose(1, 0, 2)
        n_fixed = f.shape[2] + s.shape[1]
        out[:, :, f.shape[2] : n_fixed] = np.nan_to_num(s, nan=0.0)[:, None, :]
        if self.observation_latency:
            if observed is None:
                raise InputError("a nowcast model's inputs need the SMAP record (observed)")
            out[:, :, n_fixed:] = observed
        return out

    def check(self, ds: xr.Dataset) -> None:
        """Fail clearly if an input dataset lacks a variable the model was trained on."""
        have = {str(v) for v in ds["variable"].values}
        have_static = {str(v) for v in ds["static_variable"].values}
        missing = [n for n in self.forcing_names if n not in have]
        missing += [n for n in self.static_names if n not in have_static]
        if missing:
            raise InputError(
                f"input dataset lacks variable(s) the model needs: {', '.join(missing)}"
            )

    def scale_target(self, target: np.ndarray) -> np.ndarray:
        return ((target - self.target_mean) / self.target_std).astype(np.float32)

    def unscale_target(self, values: np.ndarray) -> np.ndarray:
        return (values * self.target_std + self.target_mean).astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)

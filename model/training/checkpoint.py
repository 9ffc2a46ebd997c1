"""A checkpoint is a directory: config.json, normalization.json, one weights file per ensemble
member (member_<k>.safetensors), training_log.csv, validation.json, probe.npy (a sample of real
normalised training inputs on which the inference engine checks reduced precisions) and
probe_reference.npy (each member's float32 outputs on it).

Weights are safetensors, read into numpy without PyTorch: extension on the CPU kernels never
imports torch (about a second of every run). Checkpoints of earlier versions (member_<k>.pt, a
torch state_dict) are still read, through torch."""

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from model.errors import InputError
from model.grid import DEFAULT, Grid, named
from model.training.config import TrainConfig
from model.training.normalize import Normalizer

PROBE_CELLS, PROBE_DAYS = 64, 365
WEIGHTS_SUFFIXES = (".safetensors", ".pt")


@dataclass
class Checkpoint:
    """A trained model: its config, normalisation and the weights of each ensemble member (numpy
    arrays by state_dict name; torch tensors given here are converted)."""

    config: dict
    normalizer: Normalizer
    state_dicts: list[dict]
    validation: dict = field(default_factory=dict)
    probe: np.ndarray | None = None  # (cell, day, n_inputs) normalised inputs, at most PROBE_*
    probe_reference: np.ndarray | None = None  # (member, cell, day) float32 outputs on the probe

    def __post_init__(self):
        self.state_dicts = [
            {name: np.ascontiguousarray(value) for name, value in state.items()}
            for state in self.state_dicts
        ]

    @property
    def grid(self) -> Grid:
        """The grid of the inputs it learnt from (recorded when not the default 36 km one)."""
        return named(self.config.get("grid", DEFAULT.name))

    @property
    def is_nowcast(self) -> bool:
        """A nowcast model (Fang & Shen 2020): its inputs add the latest SMAP at a latency."""
        return self.normalizer.observation_latency > 0

    def digest(self) -> str:
        """The model by content (config, normalisation, weights), wherever its files lie: what
        a cube records so that it grows only with the model that made it."""
        digest = hashlib.sha256(
            json.dumps(
                [self.config, self.normalizer.to_dict()], sort_keys=True, default=str
            ).encode()
        )
        for state in self.state_dicts:
            for name in sorted(state):
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(state[name]).tobytes())
        return digest.hexdigest()

    def member(self, k: int) -> "Checkpoint":
        """Ensemble member k alone, with its probe outputs."""
        reference = None if self.probe_reference is None else self.probe_reference[k : k + 1]
        return replace(self, state_dicts=[self.state_dicts[k]], probe_reference=reference)

    def networks(self, device: str = "cpu") -> list:
        """The ensemble members as evaluation-mode torch modules."""
        from model.training.network import from_state

        return [
            from_state(state, self.config["dropout"]).to(device).eval()
            for state in self.state_dicts
        ]


RUN_CONFIG = "train.yaml"  # the run's TrainConfig, for `smapx train --config` to rerun it


def run_config_yaml(config: dict) -> str:
    """The TrainConfig fields of a checkpoint's config as YAML (as neuralhydrology keeps its
    run's config.yml), in the config's order."""
    import yaml

    run = {f.name: config[f.name] for f in fields(TrainConfig) if f.name in config}
    return yaml.safe_dump(run, sort_keys=False)


def save(path: str | Path, ckpt: Checkpoint, log_csv: str = "") -> Path:
    """Write a checkpoint directory (created if needed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(ckpt.config, indent=2, default=str))
    (path / RUN_CONFIG).write_text(run_config_yaml(ckpt.config))
    (path / "normalization.json").write_text(json.dumps(ckpt.normalizer.to_dict(), indent=2))
    (path / "validation.json").write_text(json.dumps(ckpt.validation, indent=2))
    for suffix in WEIGHTS_SUFFIXES:
        for old in path.glob(f"member_*{suffix}"):
            old.unlink()
    for k, state in enumerate(ckpt.state_dicts):
        save_file(state, path / f"member_{k}.safetensors")
    for name in ("probe", "probe_reference"):
        array, file = getattr(ckpt, name), path / f"{name}.npy"
        if array is not None:
            np.save(file, array)
        else:
            file.unlink(missing_ok=True)
    if log_csv:
        (path / "training_log.csv").write_text(log_csv)
    return path


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint directory, with a clear error when it is not one."""
    path = Path(path)
    members = _member_files(path)
    if not (path / "config.json").is_file() or not members:
        raise InputError(
            f"not a model checkpoint (config.json and member_*.safetensors expected): {path}"
        )
    config = json.loads((path / "config.json").read_text())
    normalizer = Normalizer(**json.loads((path / "normalization.json").read_text()))
    validation_file = path / "validation.json"
    validation = json.loads(validation_file.read_text()) if validation_file.is_file() else {}
    states = [_read_weights(p) for p in members]
    probe, reference = (
        _optional_array(path / f"{name}.npy") for name in ("probe", "probe_reference")
    )
    if probe is not None and (probe.ndim != 3 or probe.shape[2] != normalizer.n_inputs):
        raise InputError(
            f"probe.npy of {path} is {probe.shape}, not (cell, day, {normalizer.n_inputs})"
        )
    if reference is not None and (
        probe is None or reference.shape != (len(states), *probe.shape[:2])
    ):
        raise InputError(
            f"probe_reference.npy of {path} is {reference.shape}, not "
            f"(member, cell, day) of its {len(states)} members and probe.npy"
        )
    return Checkpoint(config, normalizer, states, validation, probe, reference)


def files(path: str | Path) -> list[Path]:
    """The files whose bytes make the checkpoint (what a cube's fingerprint hashes)."""
    path = Path(path)
    probes = [path / f"{name}.npy" for name in ("probe", "probe_reference")]
    return sorted(path.glob("*.json")) + _member_files(path) + [p for p in probes if p.is_file()]


def _member_files(path: Path) -> list[Path]:
    """member_<k> weights, in member order; a member saved in both formats is read from
    safetensors."""
    by_member = {}
    for suffix in reversed(WEIGHTS_SUFFIXES):
        by_member.update({int(p.stem.split("_")[1]): p for p in path.glob(f"member_*{suffix}")})
    return [by_member[k] for k in sorted(by_member)]


def _read_weights(file: Path) -> dict:
    if file.suffix == ".safetensors":
        return load_file(file)
    import torch  # checkpoints of earlier versions: a torch state_dict

    return {
        name: value.numpy()
        for name, value in torch.load(file, map_location="cpu", weights_only=True).items()
    }


def _optional_array(file: Path) -> np.ndarray | None:
    return np.load(file) if file.is_file() else None

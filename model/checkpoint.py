"""A checkpoint is a directory: config.json, normalization.json, one weights file per ensemble
member (member_<k>.pt, a state_dict), training_log.csv, validation.json and probe.npy (a sample
of real normalised training inputs on which the inference engine checks reduced precisions)."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.errors import InputError
from model.network import SoilMoistureLSTM
from model.normalize import Normalizer

PROBE_CELLS, PROBE_DAYS = 64, 365


@dataclass
class Checkpoint:
    """A trained model: its config, normalisation and the weights of each ensemble member."""

    config: dict
    normalizer: Normalizer
    state_dicts: list[dict]
    validation: dict = field(default_factory=dict)
    probe: np.ndarray | None = None  # (cell, day, n_inputs) normalised inputs, at most PROBE_*

    def networks(self, device: str = "cpu") -> list[SoilMoistureLSTM]:
        """The ensemble members as evaluation-mode modules."""
        nets = []
        for state in self.state_dicts:
            net = SoilMoistureLSTM(self.normalizer.n_inputs, self.config["hidden"], self.config["dropout"])
            net.load_state_dict(state)
            nets.append(net.to(device).eval())
        return nets


def save(path: str | Path, ckpt: Checkpoint, log_csv: str = "") -> Path:
    """Write a checkpoint directory (created if needed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(ckpt.config, indent=2, default=str))
    (path / "normalization.json").write_text(json.dumps(ckpt.normalizer.to_dict(), indent=2))
    (path / "validation.json").write_text(json.dumps(ckpt.validation, indent=2))
    for old in path.glob("member_*.pt"):
        old.unlink()
    for k, state in enumerate(ckpt.state_dicts):
        torch.save(state, path / f"member_{k}.pt")
    probe = path / "probe.npy"
    if ckpt.probe is not None:
        np.save(probe, ckpt.probe)
    else:
        probe.unlink(missing_ok=True)
    if log_csv:
        (path / "training_log.csv").write_text(log_csv)
    return path


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint directory, with a clear error when it is not one."""
    path = Path(path)
    members = sorted(path.glob("member_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    if not (path / "config.json").is_file() or not members:
        raise InputError(f"not a model checkpoint (config.json and member_*.pt expected): {path}")
    config = json.loads((path / "config.json").read_text())
    normalizer = Normalizer(**json.loads((path / "normalization.json").read_text()))
    validation_file = path / "validation.json"
    validation = json.loads(validation_file.read_text()) if validation_file.is_file() else {}
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in members]
    probe_file = path / "probe.npy"
    probe = np.load(probe_file) if probe_file.is_file() else None
    if probe is not None and (probe.ndim != 3 or probe.shape[2] != normalizer.n_inputs):
        raise InputError(f"probe.npy of {path} is {probe.shape}, not (cell, day, {normalizer.n_inputs})")
    return Checkpoint(config, normalizer, states, validation, probe)

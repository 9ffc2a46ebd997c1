"""The network of Fang et al.: input linear + ReLU, one LSTM layer, dropout, linear head."""

import torch
from torch import nn

from model.settings import get_settings


class SoilMoistureLSTM(nn.Module):
    """Maps normalised daily inputs (batch, time, n_inputs) to normalised soil moisture
    (batch, time)."""

    def __init__(self, n_inputs: int, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.n_inputs = n_inputs
        self.hidden = hidden
        self.input_layer = nn.Linear(n_inputs, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, state=None) -> torch.Tensor:
        out, _ = self.lstm(torch.relu(self.input_layer(x)), state)
        return self.head(self.dropout(out)).squeeze(-1)


def from_state(state: dict, dropout: float = 0.5) -> SoilMoistureLSTM:
    """The network of a state_dict of numpy arrays or tensors (a checkpoint member's weights)."""
    n_inputs, hidden = state["input_layer.weight"].shape[1], state["lstm.weight_hh_l0"].shape[1]
    net = SoilMoistureLSTM(n_inputs, hidden, dropout)
    net.load_state_dict({name: torch.as_tensor(value) for name, value in state.items()})
    return net


def _use_configured_threads() -> None:
    """torch computes on SMAPX_TORCH_THREADS threads where set (workers sharing a machine split
    its cores). Every torch computation of smapx imports this module first, so processes that
    never need torch (extension on the kernels) never import it."""
    threads = get_settings().torch_threads
    if threads:
        torch.set_num_threads(threads)


_use_configured_threads()

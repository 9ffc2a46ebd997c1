"""What defines a training run, in a module of its own: the command line reads its defaults
without importing torch."""

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as the checkpoint's config.json."""

    start: str
    end: str
    validation: str = "seasons"  # model.training.holdout.PROTOCOLS
    validation_days: int = 61
    gap_days: int = 5
    hidden: int = 128  # the paper has 256: as skilful here at a quarter of the work (docs)
    dropout: float = 0.5
    window: int = 120
    burn_in: int = 30
    batch_size: int = 64
    iterations_per_epoch: int = 50
    max_epochs: int = 40
    patience: int = 8
    learning_rate: float = 3e-3
    schedule: str = "cosine"  # annealed to 0 over max_epochs (refits: their epochs), or "constant"
    loss: str = "mse"  # or "cell_rmse": the mean over the batch's cells of each one's RMSE
    seed: int = 42
    ensemble: int = 2
    bagging: float = 0.0  # share of the cells each further member leaves out (0: all cells)
    refit: bool = True
    device: str = "auto"
    threads: int = 0
    nowcast: bool = False
    latency: int = 1  # days between a SMAP retrieval and the nowcast that may use it
    budget_seconds: float = 0.0  # wall clock of the whole run; 0: no limit
    # cells an epoch's validation runs (a fixed random sample where there are more): with the
    # (cell, window) minibatches, what keeps an epoch's cost from growing with the cell count
    validation_cells: int = 4096
    # cells training reads (a fixed random sample where there are more, its inputs read chunk by
    # chunk): what keeps a 9 km CONUS training (98k cells) within memory; every 36 km region
    # (CONUS: 6,090 cells) trains on all its cells
    training_cells: int = 8192

"""A tiny cube's products and in situ stations with hand-computable errors, shared by the
evaluation and report tests."""

import numpy as np
import pandas as pd

from model import grid
from model.evaluation.insitu import Stations
from model.evaluation.periods import period_labels
from model.evaluation.rootzone import exponential_filter

WINDOW = "2015-04-01..2015-12-31"
TIME = pd.date_range("2015-01-01", "2016-12-31")
ROWS, COLS = np.array([90, 90]), np.array([220, 221])  # two cells over Kansas


def patterns():
    """Error patterns with known moments: a = +-1 every day, b = +-1 every two days (a, b
    uncorrelated), and the truth the probes see."""
    t = np.arange(len(TIME))
    a = np.where(t % 2 == 0, 1.0, -1.0)
    b = np.where(t % 4 < 2, 1.0, -1.0)
    truth = 0.25 + 0.05 * np.sin(2 * np.pi * t / 365)
    return a, b, truth


def products():
    """lstm: truth + 0.01 a in the training window, + 0.02 a outside it; noah: truth + 0.02 b;
    lsm2: truth - 0.03; smap: truth every third day from 2015-04-01."""
    a, b, truth = patterns()
    inside = (
        period_labels(TIME, (pd.Timestamp("2015-04-01"), pd.Timestamp("2015-12-31"))) == "training"
    )
    smap = np.where((np.arange(len(TIME)) % 3 == 0) & (TIME >= "2015-04-01"), truth, np.nan)
    return {
        "lstm": truth + np.where(inside, 0.01, 0.02) * a,
        "noah": truth + 0.02 * b,
        "lsm2": truth - 0.03,
        "smap": smap,
    }


def tiny_stations():
    """Cell 1: sparse station S1 (5 cm) and its 50 cm probe; cell 2: a dense pair D1, D2 whose
    mean is the truth; plus a station far away and a probe too deep to serve."""
    _, _, truth = patterns()
    deep = exponential_filter(truth[:, None], 10.0)[:, 0]
    (lat1, lat2), (lon1, lon2) = grid.rowcol_to_latlon(ROWS, COLS)
    sensors = [
        ("S1@5", "S1", lat1, lon1, 0.05),
        ("S1@50", "S1", lat1, lon1, 0.5),
        ("D1@5", "D1", lat2 + 0.05, lon2, 0.05),
        ("D2@5", "D2", lat2 - 0.05, lon2, 0.05),
        ("FAR@5", "FAR", 10.0, 10.0, 0.05),
        ("S1@200", "S1", lat1, lon1, 2.0),
    ]
    values = {
        "S1@5": truth,
        "S1@50": deep,
        "D1@5": truth + 0.01,
        "D2@5": truth - 0.01,
        "FAR@5": truth,
        "S1@200": truth,
    }
    table = pd.DataFrame(
        [
            {
                "sensor": s,
                "station": st,
                "network": "test",
                "kind": "",
                "lat": la,
                "lon": lo,
                "depth_from": d,
                "depth_to": d,
                "depth_m": d,
            }
            for s, st, la, lo, d in sensors
        ]
    ).set_index("sensor")
    return Stations(table, pd.DataFrame(values, index=TIME.rename("time")))

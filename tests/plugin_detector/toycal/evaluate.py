import numpy as np
from hepnb import metrics as M
from hepnb.dataset import Dataset, open_dataset


def evaluate(base, predictions: dict):
    "Relative energy resolution (68 % width of (E_pred - E_true) / E_true) of each prediction dataset."
    base = base if isinstance(base, Dataset) else open_dataset(base)
    truth = base.read(["energy"]).column(0).to_numpy().astype(float)
    rows, arrays = [], {}
    for (stage, impl), ds in predictions.items():
        pred = (ds if isinstance(ds, Dataset) else open_dataset(ds)).read(["pred_energy"]).column(0).to_numpy().astype(float)
        rel = (pred - truth) / truth
        value, error = M.bootstrap(M.sigma68, rel, n=100)
        rows.append({"stage": stage, "implementation": impl, "metric": "energy_sigma68", "value": float(value),
                     "error": float(error), "better": "lower", "n": len(rel)})
        arrays[stage, impl] = rel
    return rows, arrays

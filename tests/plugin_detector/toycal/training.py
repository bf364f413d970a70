"""The toy calorimeter's models: a shared sensor backbone, an energy head or (pretraining) a masked-sensor decoder,
trained with hepnb's generic Trainer."""
import dataclasses, json, os
from pathlib import Path
import numpy as np
import pyarrow as pa
import torch
import torch.nn as nn
from hepnb.core import HepnbError
from hepnb.dataset import Dataset, open_dataset
from hepnb.loader import LoaderConfig, collate, make_loader
from hepnb.stage import StageImpl
from hepnb.train import TrainConfig, fit_run, load_weights
from .schema import N_SENSORS
from .stages import ENERGY

TASKS = ("energy", "pretrain")
SCALE = 40.0        # photons per GeV: inputs in GeV per sensor


@dataclasses.dataclass
class ModelConfig:
    task: str = "energy"
    width: int = 32
    mask_fraction: float = 0.25        # pretraining: sensors hidden and reconstructed

    def __post_init__(self):
        if self.task not in TASKS: raise HepnbError(f"expected one of {TASKS}, found {self.task!r}", where="task")


class ToyModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.backbone = nn.Sequential(nn.Linear(2 * N_SENSORS, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU())
        if config.task == "energy": self.head = nn.Linear(w, 1)
        else: self.decoder = nn.Linear(w, N_SENSORS)

    def forward(self, x, keep):
        "x [B, S] photons / SCALE, keep [B, S] 1 where the sensor is seen."
        z = self.backbone(torch.cat([x * keep, keep], -1))
        return self.head(z)[:, 0] * x.sum(-1).clamp(min=1e-3) if self.config.task == "energy" else self.decoder(z)


def loss(model, batch):
    model = getattr(model, "module", model)
    x = batch.dense[..., 0] / SCALE
    if model.config.task == "energy":
        e = batch.events["energy"]
        pred = model(x, torch.ones_like(x))
        rel = pred / e - 1
        return rel.abs().mean(), {"rel_mae": rel.abs().mean().detach()}
    keep = (torch.rand_like(x) >= model.config.mask_fraction).to(x.dtype)
    out = model(x, keep)
    hidden = 1 - keep
    l = ((out - x) ** 2 * hidden).sum() / hidden.sum().clamp(min=1)
    return l, {"masked_mse": l.detach()}


def loader_config(**kw) -> LoaderConfig:
    return LoaderConfig(dense_features=["npho"], event_columns=["energy"], **kw)


def train_task(task, dataset, run_dir, *, model: ModelConfig | None = None, train: TrainConfig | None = None,
               batch_size: int = 64, num_workers: int = 0, resume: bool = False, mlflow_uri=None) -> dict:
    ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    mc = dataclasses.replace(model or ModelConfig(), task=task)
    tc = train or TrainConfig()
    opts = dict(batch_size=batch_size, num_workers=num_workers, seed=tc.seed)
    tl = make_loader(ds, loader_config(split="train", shuffle=True, **opts))
    vl = make_loader(ds, loader_config(split="val", **opts))
    return fit_run(run_dir, lambda: ToyModel(mc), loss, tl, vl, tc, record={"detector": "toycal", "model": dataclasses.asdict(mc)},
                   dataset=ds, resume=resume, mlflow_uri=mlflow_uri)


def load_model(run_dir, device: str = "cpu") -> ToyModel:
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "model.json").read_text())
    ck = run_dir / "checkpoints" / "best.pt"
    model = ToyModel(ModelConfig(**info["model"]))
    return load_weights(model, ck if ck.is_file() else run_dir / "checkpoints" / "last.pt").to(device).eval()


class MLStage(StageImpl):
    kind, name = "ml", "toy_mlp"

    def __init__(self, run_dir, device: str = "cpu"):
        self.model = load_model(run_dir, device)
        if self.model.config.task != "energy":
            raise HepnbError(f"the run folder holds a {self.model.config.task} model, not an energy model", where=run_dir)
        self.spec, self.run_dir = ENERGY, Path(run_dir)

    def checkpoint(self):
        return self.run_dir / "checkpoints" / "best.pt"

    @torch.no_grad()
    def predict(self, batch: pa.Table) -> pa.Table:
        b = collate(batch, LoaderConfig(dense_features=["npho"]))
        x = b.dense[..., 0] / SCALE
        pred = self.model(x, torch.ones_like(x)).numpy().astype(np.float32)
        return pa.table({"pred_energy": pa.array(pred)})

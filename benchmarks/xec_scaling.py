"""XEC regressors against their classical stages as the training set and the training steps grow.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/xec_scaling.py --sizes 4000,8000,16000 --out /tmp/xecq --reuse
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/xec_scaling.py --task angle --sizes 16000 --epochs 24 --out /tmp/xecq

Uses the datasets of `benchmarks/xec_quality.py` in --out (its held-out 52.8 MeV test set and calibration set; they are
simulated here when missing, with the same seeds), simulates a training set of the largest size with the same seed as
that script's (so the first 16 000 events are the same events), and trains the `--task` regressor (CPU size, the same
training settings as `xec_quality.py`, the same number of epochs for every size) on its first N events for each N.
Prints a Markdown table: N, the ML and classical headline metric with bootstrap errors, their ratio, and the ML
prediction averaged over each event's four mirror images (z → -z, y → -y: the calorimeter's symmetries;
`MLStage(..., mirror_average=True)`). `--mirror` trains
on events mirrored at random in z and y (`ModelConfig.mirror`). `--reuse` keeps runs already trained
(`{task}-n{N}[-e{epochs}][-mirror]`).
"""
import argparse
import dataclasses
import time
from pathlib import Path

from hepnb.dataset import open_dataset, write_dataset
from hepnb.detectors.xec import stages as S
from hepnb.detectors.xec.evaluate import evaluate
from hepnb.detectors.xec.models import XecModelConfig
from hepnb.detectors.xec.sim import PRESETS, SimConfig, simulate_dataset
from hepnb.detectors.xec.training import MLStage, ModelConfig, train_task
from hepnb.stage import run_stage
from hepnb.train import TrainConfig


HEADLINE = {"position": ("xec.position", "uvw_dist_68pct"), "angle": ("xec.angle", "angle_68pct"),
            "energy": ("xec.energy", "energy_sigma68_rel"), "time": ("xec.time", "time_sigma68")}


def metric(rows, task, impl):
    stage, name = HEADLINE[task]
    r = next(r for r in rows if r["stage"] == stage and r["metric"] == name and r["implementation"] == impl)
    return r["value"], r["error"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=list(HEADLINE), default="position")
    ap.add_argument("--sizes", default="4000,8000,16000", help="comma-separated training-set sizes")
    ap.add_argument("--calib", type=int, default=3_000)
    ap.add_argument("--test", type=int, default=4_000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema-decay", type=float, default=0.99)
    ap.add_argument("--mirror", action="store_true",
                    help="train on events mirrored at random in z and y (ModelConfig.mirror)")
    ap.add_argument("--reuse", action="store_true", help="keep datasets and runs already in --out")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/xec"))
    a = ap.parse_args()
    sizes = sorted(int(s) for s in a.sizes.split(","))
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    uniform = SimConfig(**PRESETS["uniform15to60"])

    def sim(name, n, **kw):
        path = a.out / name
        if (path / "manifest.json").is_file():
            ds = open_dataset(path)
            if ds.num_rows == n: return ds
        return simulate_dataset(path, n, overwrite=True, **kw)
    big = sim(f"train-{sizes[-1]}", sizes[-1], seed=11, config=uniform)
    calib = sim("calib", a.calib, seed=12, config=dataclasses.replace(uniform, first_run=5001))
    test = sim("test", a.test, seed=13, config=SimConfig(first_run=9001))
    table = big.read()

    cal = S.calibrate(calib.read())
    cal.save(a.out / "calibration.json")
    calibration = str(a.out / "calibration.json")
    pred = pos = run_stage(S.LocalFit(calibration=calibration), test, a.out / "p-position-classical", overwrite=True)
    if a.task != "position":
        impl = {"angle": S.VertexToPoint, "energy": S.PhotonSum, "time": S.WeightedTime}[a.task]
        pred = run_stage(impl(calibration=calibration), test, a.out / f"p-{a.task}-classical",
                         upstream={"xec.position": pos}, overwrite=True)
    stage = HEADLINE[a.task][0]
    c, ce = metric(evaluate(test, {(stage, "classical"): pred})[0], a.task, "classical")

    base = XecModelConfig()
    model = ModelConfig(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, "task": a.task,
                           "mirror": a.mirror})
    tc = TrainConfig(epochs=a.epochs, lr=a.lr, warmup_steps=100, ema_decay=a.ema_decay, echo=False, seed=1)
    rows = []
    for n in sizes:
        tag = f"n{n}" + (f"-e{a.epochs}" if a.epochs != 8 else "") + ("-mirror" if a.mirror else "")
        run = a.out / f"{a.task}-{tag}"
        s = time.perf_counter()
        if not (a.reuse and (run / "model.json").is_file()):
            ds = write_dataset(a.out / f"train-n{n}", table.slice(0, n), schema=big.schema, overwrite=True)
            train_task(a.task, ds, run, model=model, train=tc, batch_size=a.batch_size)
        p = run_stage(MLStage(run), test, a.out / f"p-{a.task}-{tag}", overwrite=True)
        v, e = metric(evaluate(test, {(stage, "ml"): p})[0], a.task, "ml")
        pm = run_stage(MLStage(run, mirror_average=True), test, a.out / f"p-{a.task}-{tag}-mavg", overwrite=True)
        m, me = metric(evaluate(test, {(stage, "ml"): pm})[0], a.task, "ml")
        rows.append((n, v, e, m, me, time.perf_counter() - s))
        print(f"N={n}: {v:.4g} ± {e:.2g} vs classical {c:.4g} ({v / c:.3f}), mirror-averaged {m:.4g} ± {me:.2g} "
              f"({m / c:.3f}), {time.perf_counter() - s:.0f} s", flush=True)

    name = HEADLINE[a.task][1]
    print(f"\nXEC {a.task} vs training-set size{' (mirrored events)' if a.mirror else ''}: {a.epochs} epochs each, "
          f"batch {a.batch_size}, CPU model; {a.test} held-out 52.8 MeV events; classical {name} {c:.4g} ± {ce:.2g}\n")
    print(f"| training events | ML {name} | ML / classical | mirror-averaged ML | mirror-averaged / classical "
          "| time (s) |")
    print("|---|---|---|---|---|---|")
    for n, v, e, m, me, t in rows:
        print(f"| {n} | {v:.4g} ± {e:.2g} | {v / c:.3f} | {m:.4g} ± {me:.2g} | {m / c:.3f} | {t:.0f} |")
    print(f"\nTotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

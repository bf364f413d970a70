"""XEC reconstruction quality: ML next to classical on the same held-out 52.8 MeV events, pretraining, inpainting.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/xec_quality.py --train 20000 --epochs 8 --out benchmarks/out/xec

Simulates a training set (15-60 MeV), a calibration set for the classical constants and a held-out signal set
(52.8 MeV; different seeds and run numbers), then:
1. trains the energy and position regressors (and with `--heads` time and angle) from scratch (the seed's face
   tokens) and the position regressor with
   spatial tokens; pretrains the encoder on masked sensors and fine-tunes energy and position from it with
   `--label-fraction` of the labels next to scratch with the same labels;
2. trains the inpainter;
3. runs the classical chain and the ML stages on the test set and prints the headline numbers side by side
   (ratios ML / classical), the inpainters per face, and the energy resolution with 1 % dead channels (raw,
   neighbour-filled, ML-filled). Tables go to --out as Markdown and JSON.

`--reuse` keeps datasets and trained runs already in --out (a part can be added to an earlier run's folder).
"""
import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from hepnb.dataset import open_dataset, write_dataset
from hepnb.detectors.xec import stages as S
from hepnb.detectors.xec.evaluate import evaluate
from hepnb.detectors.xec.inpaint import (MLInpaint, NeighbourMean, SolidAngleWeighted, apply_inpainting,
                                         evaluate_inpaint, kill_channels)
from hepnb.detectors.xec.sim import PRESETS, SimConfig, simulate_dataset
from hepnb.detectors.xec.training import MLStage, ModelConfig, train_task
from hepnb.stage import run_stage
from hepnb.train import TrainConfig


def metric(rows, stage, name, impl):
    r = next((r for r in rows if r["stage"] == stage and r["metric"] == name and r["implementation"] == impl), None)
    return (r["value"], r["error"]) if r else (float("nan"), None)


def fmt(v, e=None, digits=4):
    return f"{v:.{digits}g}" + (f" ± {e:.2g}" if e else "")


def subset(ds, out, fraction, seed):
    "The first `fraction` of the events (the labelled subset of a fine-tuning study)."
    t = ds.read()
    n = max(1, int(round(fraction * len(t))))
    return write_dataset(out, t.slice(0, n), schema=ds.schema, overwrite=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=20_000)
    ap.add_argument("--calib", type=int, default=3_000)
    ap.add_argument("--test", type=int, default=5_000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--pretrain-epochs", type=int, default=4)
    ap.add_argument("--inpaint-epochs", type=int, default=None, help="default: --epochs")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema-decay", type=float, default=0.99)
    ap.add_argument("--label-fraction", type=float, default=0.1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--size", choices=["cpu", "faithful"], default="cpu")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: tokens, pretrain, inpaint")
    ap.add_argument("--heads", default="energy,position", help="regressors next to classical: energy,position,time,angle")
    ap.add_argument("--reuse", action="store_true", help="keep datasets and trained runs already in --out")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/xec"))
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    uniform = SimConfig(**PRESETS["uniform15to60"])
    def sim(name, n, **kw):
        path = a.out / name
        if a.reuse and (path / "manifest.json").is_file():
            ds = open_dataset(path)
            if ds.num_rows != n: raise SystemExit(f"--reuse: {path} holds {ds.num_rows} events, asked for {n}")
            return ds
        return simulate_dataset(path, n, overwrite=True, **kw)
    train = sim("train", a.train, seed=11, config=uniform)
    calib = sim("calib", a.calib, seed=12, config=dataclasses.replace(uniform, first_run=5001))
    test = sim("test", a.test, seed=13, config=SimConfig(first_run=9001))
    t_sim = time.perf_counter() - t0

    from hepnb.detectors.xec.models import XecModelConfig
    base = XecModelConfig.faithful() if a.size == "faithful" else XecModelConfig()
    def mc(**kw):
        return ModelConfig(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **kw})
    tc = TrainConfig(epochs=a.epochs, lr=a.lr, warmup_steps=100, device=a.device, precision=a.precision, ema_decay=a.ema_decay,
                     echo=False, seed=1)
    runs, timing, reused = {}, {}, []
    heads = [h for h in a.heads.split(",") if h]
    bad = [h for h in heads if h not in ("energy", "position", "time", "angle")]
    if bad or not {"energy", "position"} <= set(heads):
        raise SystemExit(f"--heads: expected energy,position and any of time, angle; found {a.heads!r}")
    def fit(name, task, ds, model, train_cfg=tc):
        runs[name] = a.out / name
        if a.reuse and (a.out / name / "model.json").is_file():
            reused.append(name)
            return
        s = time.perf_counter()
        train_task(task, ds, a.out / name, model=model, train=train_cfg, batch_size=a.batch_size)
        timing[name] = time.perf_counter() - s
    for h in heads:
        fit(h, h, train, mc(task=h))
    if "tokens" not in skip:
        fit("position-spatial-tokens", "position", train, mc(task="position", tokens="spatial"))
    if "pretrain" not in skip:
        fit("mae", "mae", train, mc(task="mae", mask_ratio=0.6), dataclasses.replace(tc, epochs=a.pretrain_epochs))
        few = subset(train, a.out / "train-labelled", a.label_fraction, seed=3)
        fit("energy-few", "energy", few, mc(task="energy"))
        fit("energy-few-mae", "energy", few, mc(task="energy"), dataclasses.replace(tc, init_from=str(a.out / "mae")))
        fit("position-few", "position", few, mc(task="position"))
        fit("position-few-mae", "position", few, mc(task="position"),
            dataclasses.replace(tc, init_from=str(a.out / "mae")))
    if "inpaint" not in skip:
        fit("inpaint", "inpaint", train, mc(task="inpaint", mask_ratio=0.05),
            dataclasses.replace(tc, epochs=a.inpaint_epochs or a.epochs))

    cal = S.calibrate(calib.read())
    cal_path = a.out / "calibration.json"
    cal.save(cal_path)
    pos = run_stage(S.LocalFit(calibration=str(cal_path)), test, a.out / "p-position-classical", overwrite=True)
    preds = {("xec.position", "classical"): pos}
    preds["xec.energy", "classical"] = run_stage(S.PhotonSum(calibration=str(cal_path)), test,
                                                 a.out / "p-energy-classical", upstream={"xec.position": pos},
                                                 overwrite=True)
    if "time" in heads:
        preds["xec.time", "classical"] = run_stage(S.WeightedTime(calibration=str(cal_path)), test,
                                                   a.out / "p-time-classical", upstream={"xec.position": pos},
                                                   overwrite=True)
    if "angle" in heads:
        preds["xec.angle", "classical"] = run_stage(S.VertexToPoint(calibration=str(cal_path)), test,
                                                    a.out / "p-angle-classical", upstream={"xec.position": pos},
                                                    overwrite=True)
    rows, _ = evaluate(test, preds)
    ml_rows = {}
    for name, path in runs.items():
        if name in ("mae", "inpaint"): continue
        stage = "xec." + name.split("-")[0]
        p = run_stage(MLStage(path), test, a.out / f"p-{name}", overwrite=True)
        ml_rows[name], _ = evaluate(test, {(stage, "ml"): p})

    lines = [f"XEC quality: {a.train} training events (15-60 MeV, {a.epochs} epochs), {a.calib} calibration, "
             f"{a.test} held-out 52.8 MeV events; model size {a.size}; simulation {t_sim:.0f} s", "",
             "| quantity | ML | classical | ML / classical |", "|---|---|---|---|"]
    summary = {}
    quantities = (("energy", "xec.energy", "energy_sigma68_rel"), ("energy", "xec.energy", "energy_abs68_rel"),
                  ("position", "xec.position", "uvw_dist_68pct"), ("position", "xec.position", "sigma68_w"),
                  ("time", "xec.time", "time_sigma68"), ("angle", "xec.angle", "angle_68pct"))
    for name, stage, m in (q for q in quantities if q[0] in heads):
        v, e = metric(ml_rows[name], stage, m, "ml")
        c, ce = metric(rows, stage, m, "classical")
        summary[f"{name}.{m}"] = {"ml": v, "ml_error": e, "classical": c, "classical_error": ce, "ratio": v / c}
        lines.append(f"| {m} | {fmt(v, e)} | {fmt(c, ce)} | {v / c:.3f} |")
    if "position-spatial-tokens" in ml_rows:
        v, e = metric(ml_rows["position"], "xec.position", "uvw_dist_68pct", "ml")
        s, se = metric(ml_rows["position-spatial-tokens"], "xec.position", "uvw_dist_68pct", "ml")
        lines += ["", f"Spatial tokens vs the seed's face tokens, uvw_dist_68pct: {fmt(s, se)} vs {fmt(v, e)} cm "
                      f"(ratio {s / v:.3f})"]
        summary["tokens"] = {"spatial": s, "face": v}
    if "energy-few" in ml_rows:
        lines += ["", f"With {a.label_fraction:.0%} of the labels: scratch vs MAE-initialised", "",
                  "| quantity | scratch | from MAE | ratio |", "|---|---|---|---|"]
        for name, stage, m in (("energy", "xec.energy", "energy_sigma68_rel"), ("position", "xec.position", "uvw_dist_68pct")):
            s, se = metric(ml_rows[f"{name}-few"], stage, m, "ml")
            f, fe = metric(ml_rows[f"{name}-few-mae"], stage, m, "ml")
            lines.append(f"| {m} | {fmt(s, se)} | {fmt(f, fe)} | {f / s:.3f} |")
            summary[f"few.{name}"] = {"scratch": s, "mae": f}
    if "inpaint" in runs:
        killed = kill_channels(test, a.out / "killed", 0.01, seed=5, pattern="map", overwrite=True)
        kpos = run_stage(S.LocalFit(calibration=str(cal_path)), killed, a.out / "k-position", overwrite=True)
        inp = {}
        filled = {}
        for label, impl, up in (("neighbour-mean", NeighbourMean(), {}),
                                ("solid-angle-weighted", SolidAngleWeighted(), {"xec.position": kpos}),
                                ("ml", MLInpaint(runs["inpaint"]), {})):
            p = run_stage(impl, killed, a.out / f"k-inpaint-{label}", upstream=up, overwrite=True)
            r, _ = evaluate_inpaint(test, killed, p, label)
            inp[label] = metric(r, "xec.inpaint", "rel_error_68_inner", label)
            filled[label] = apply_inpainting(killed, p, a.out / f"k-filled-{label}", overwrite=True)
        lines += ["", "Inpainting, 68 % relative error on the inner face (1 % dead map, sensors ≥ 100 photons):", ""]
        lines += [f"- {k}: {fmt(*v)}" for k, v in inp.items()]
        lines.append(f"- ML / neighbour mean: {inp['ml'][0] / inp['neighbour-mean'][0]:.3f}")
        summary["inpaint"] = {k: v[0] for k, v in inp.items()}
        lines += ["", "ML energy σ68(ΔE/E) with 1 % dead channels:", ""]
        ref = metric(ml_rows["energy"], "xec.energy", "energy_sigma68_rel", "ml")[0]
        for label, ds in (("raw", killed), ("neighbour-filled", filled["neighbour-mean"]), ("ML-filled", filled["ml"])):
            p = run_stage(MLStage(runs["energy"]), ds, a.out / f"k-energy-{label}", overwrite=True)
            r, _ = evaluate(test, {("xec.energy", "ml"): p})
            v, e = metric(r, "xec.energy", "energy_sigma68_rel", "ml")
            lines.append(f"- {label}: {fmt(v, e)} ({v / ref:.3f} × no dead channels)")
            summary[f"dead.{label}"] = v
    if reused: lines += ["", "Runs reused from --out (not trained here): " + ", ".join(reused)]
    lines += ["", "Training time per run (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timing.items()),
              f"Total {time.perf_counter() - t0:.0f} s"]
    text = "\n".join(lines)
    print(text)
    (a.out / "xec_quality.md").write_text(text + "\n")
    (a.out / "xec_quality.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()

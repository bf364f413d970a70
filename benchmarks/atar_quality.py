"""ATAR reconstruction quality and speed: ML vs classical on a held-out simulated set.

    .venv/bin/python benchmarks/atar_quality.py --train 30000 --test 50000 --epochs 4 --out benchmarks/out/quality

Simulates a training set and an independent test set (different seeds, pile-up on), trains the ML models of
the chosen tasks (default: all seven ATAR stages) with the one training engine, runs ML and classical
implementations of each stage on the test set, and prints the headline metrics side by side, the training
and inference speed, and the model sizes. The summary is also written as Parquet/CSV (for comparisons).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from hepnb.detectors.atar.evaluate import evaluate
from hepnb.detectors.atar.models import AtarModelConfig
from hepnb.detectors.atar.sim import simulate_dataset
from hepnb.detectors.atar.models import TASKS
from hepnb.detectors.atar.stages import BraggPeakStop, GroupRules, HitRules, LineFit, PromptEnergy, Proximity, TrackEnds
from hepnb.detectors.atar.training import STAGE_OF_TASK, MLStage, train_task
from hepnb.metrics import summary_table, write_summary
from hepnb.stage import run_stage
from hepnb.train import TrainConfig

HEADLINE = [("atar.group_classifier", "exact_match"), ("atar.hit_splitter", "hit_exact_match"),
            ("atar.pattern_finder", "pair_accuracy"), ("atar.endpoints", "start_error3d_68"), ("atar.endpoints", "end_error3d_68"),
            ("atar.pion_stop", "error3d_68"), ("atar.positron_angle", "angle_68"), ("atar.event_classifier", "misid_at_95")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=30_000)
    ap.add_argument("--test", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema-decay", type=float, default=0.99)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-layers", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/quality"))
    ap.add_argument("--eval-only", action="store_true",
                    help="evaluate the run folders already in --out (no training): e.g. after a change of the classical chain")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    tasks = a.tasks.split(",")
    def ds(name, n, seed):
        p = a.out / name
        if (p / "manifest.json").exists():
            from hepnb.dataset import open_dataset
            d = open_dataset(p)
            if d.num_rows == n and d.manifest["seed"] == seed: return d
        return simulate_dataset(p, n, seed=seed, overwrite=True)
    train, test = ds("train", a.train, 1), ds("test", a.test, 2)

    speed, sizes, preds = [], {}, {}
    for task in tasks:
        run = a.out / f"run-{task}"
        t0 = time.time()
        if not a.eval_only:
            if run.exists():
                import shutil; shutil.rmtree(run)
            tc = TrainConfig(epochs=a.epochs, lr=a.lr, warmup_steps=100, ema_decay=a.ema_decay, grad_clip=1.0, device=a.device,
                             log_every=100, seed=0)
            train_task(task, train, run, model=AtarModelConfig(task=task, d_model=a.d_model, n_layers=a.n_layers),
                       train=tc, batch_size=a.batch_size)
        t_train = time.time() - t0 if not a.eval_only else float("nan")
        m = pq.read_table(run / "metrics.parquet").to_pandas()
        ep = m[m.split == "epoch"]
        eps = ep[ep.name == "events_per_s"].value.median()
        wait = ep[ep.name == "data_wait_frac"].value.median()
        stage = MLStage(run, device="cuda" if (a.device != "cpu" and torch.cuda.is_available()) else "cpu")
        sizes[task] = sum(p.numel() for p in stage.model.parameters())
        t0 = time.time()
        preds[(STAGE_OF_TASK[task].name, "ml")] = run_stage(stage, test, a.out / f"pred-ml-{task}", overwrite=True)
        t_inf = time.time() - t0
        speed.append((task, t_train, eps, wait, test.num_rows / t_inf))

    t0 = time.time()
    gc = run_stage(GroupRules(), test, a.out / "pred-classical-group", overwrite=True)
    ps = run_stage(BraggPeakStop(), test, a.out / "pred-classical-pion_stop", overwrite=True, upstream={"atar.group_classifier": gc})
    ec = run_stage(PromptEnergy(), test, a.out / "pred-classical-event", overwrite=True, upstream={"atar.pion_stop": ps})
    hs = run_stage(HitRules(), test, a.out / "pred-classical-hit", overwrite=True,
                   upstream={"atar.group_classifier": gc, "atar.pion_stop": ps})
    ep = run_stage(TrackEnds(), test, a.out / "pred-classical-endpoints", overwrite=True,
                   upstream={"atar.group_classifier": gc, "atar.pion_stop": ps})
    pa_ = run_stage(LineFit(), test, a.out / "pred-classical-positron_angle", overwrite=True,
                    upstream={"atar.group_classifier": gc, "atar.pion_stop": ps, "atar.endpoints": ep})
    pf = run_stage(Proximity(), test, a.out / "pred-classical-pattern", overwrite=True, upstream={"atar.endpoints": ep})
    t_classical = time.time() - t0
    preds.update({("atar.endpoints", "classical"): ep, ("atar.pattern_finder", "classical"): pf, ("atar.group_classifier", "classical"): gc, ("atar.pion_stop", "classical"): ps,
                  ("atar.event_classifier", "classical"): ec, ("atar.positron_angle", "classical"): pa_,
                  ("atar.hit_splitter", "classical"): hs})
    rows, _ = evaluate(test, preds)
    write_summary(rows, a.out / "summary")

    print(f"ATAR quality: train {a.train} events ({a.epochs} epochs), test {a.test} independent events, "
          f"device {a.device}, torch threads {torch.get_num_threads()}\n")
    print("| stage | metric | ML | classical | ML better |")
    print("|---|---|---:|---:|---|")
    by = {(r["stage"], r["implementation"], r["metric"]): r for r in rows}
    for stage, metric in HEADLINE:
        if (stage, "ml", metric) not in by: continue
        ml, cl = by[stage, "ml", metric], by[stage, "classical", metric]
        fmt = lambda r: f"{r['value']:.4g}" + (f" ± {r['error']:.2g}" if r["error"] is not None else "")
        better = ml["value"] > cl["value"] if ml["better"] == "higher" else ml["value"] < cl["value"]
        print(f"| {stage} | {metric} | {fmt(ml)} | {fmt(cl)} | {'yes' if better else 'NO'} |")
    extra = [r for r in rows if "coverage" in r["metric"] or r["metric"].startswith(("auc", "pair_auc", "event_all", "sigma68",
                                                                                     "misid_at_95_upper", "angle_68_", "failed"))]
    print("\n| stage | implementation | metric | value |\n|---|---|---|---:|")
    for r in extra: print(f"| {r['stage']} | {r['implementation']} | {r['metric']} | {r['value']:.4g} |")
    if ("atar.positron_angle", "ml") in preds:      # the line fit answers fewer events: compare on those both answer
        ang = {}
        p = np.stack([test.read([f"positron_p{c}"]).column(0).to_numpy() for c in "xyz"], 1).astype(float)
        for impl in ("ml", "classical"):
            u = np.stack([preds["atar.positron_angle", impl].read([f"pred_positron_u{c}"]).column(0).to_numpy(zero_copy_only=False)
                          for c in "xyz"], 1).astype(float)
            ang[impl] = np.arccos(np.clip((u * p).sum(1) / np.linalg.norm(p, axis=1), -1, 1))
        seen = test.read(["positron_time"]).column(0).to_numpy() < float(test.manifest["producer"]["parameters"].get("window_end", 700.0))
        both = seen & np.isfinite(ang["ml"]) & np.isfinite(ang["classical"])
        only_ml = seen & np.isfinite(ang["ml"]) & ~np.isfinite(ang["classical"])
        q = lambda v: f"{np.quantile(v, 0.68):.4f}" if len(v) else "-"
        print(f"\npositron angle, 68 % on the {both.sum()} events both answer: ML {q(ang['ml'][both])} rad, classical "
              f"{q(ang['classical'][both])} rad; ML on the {only_ml.sum()} the line fit cannot do: {q(ang['ml'][only_ml])} rad")
    print("\n| task | train time s | train events/s | data-wait fraction | inference events/s | parameters |")
    print("|---|---:|---:|---:|---:|---:|")
    for task, tt, eps, wait, ieps in speed:
        print(f"| {task} | {tt:.0f} | {eps:.0f} | {wait:.3f} | {ieps:.0f} | {sizes[task]:,} |")
    print(f"\nclassical chain (7 stages) on the test set: {a.test / t_classical:,.0f} events/s")


if __name__ == "__main__":
    main()

"""π→μ→e misidentification at fixed π→eν efficiency, resolved to the 1e-4 level with a dedicated background sample.

    .venv/bin/python benchmarks/atar_misid.py --run benchmarks/out/quality/run-event --signal 50000 --background 1000000

The score thresholds come from a π→eν-only sample (the efficiency is measured on signal alone); the
misidentification is counted on an independent π→μ→e-only sample simulated shard by shard (the same
simulation with `pienu_fraction=0`), so its statistical reach is set by the background size alone: one
million π→μ→e events put 100 events at 1e-4 (±10 %). ML (a trained `event` run folder) and the classical
chain (group rules → Bragg-peak stop → prompt energy) are scored on the same events. Prints a table of
misidentification with binomial errors and 90 % Clopper–Pearson upper limits per working point.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from hepnb.detectors.atar.sim import simulate_dataset
from hepnb.detectors.atar.stages import BraggPeakStop, GroupRules, PromptEnergy
from hepnb.detectors.atar.training import MLStage
from hepnb.metrics import clopper_pearson_upper
from hepnb.stage import run_stage


def scores(impl_of, ds, out: Path) -> dict:
    "p_pienu of both implementations on `ds`."
    gc = run_stage(GroupRules(), ds, out / "gc", overwrite=True)
    ps = run_stage(BraggPeakStop(), ds, out / "ps", overwrite=True, upstream={"atar.group_classifier": gc})
    cl = run_stage(PromptEnergy(), ds, out / "ec", overwrite=True, upstream={"atar.pion_stop": ps})
    ml = run_stage(impl_of(), ds, out / "ml", overwrite=True)
    return {k: d.read(["p_pienu"]).column(0).to_numpy().astype(float) for k, d in (("ml", ml), ("classical", cl))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="training run folder of the ATAR event classifier")
    ap.add_argument("--signal", type=int, default=50_000, help="π→eν events that set the thresholds")
    ap.add_argument("--background", type=int, default=1_000_000, help="π→μ→e events that measure the misidentification")
    ap.add_argument("--shard", type=int, default=200_000, help="background events per simulated shard (bounded memory)")
    ap.add_argument("--efficiency", default="0.95,0.90,0.80")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/misid"))
    a = ap.parse_args()
    effs = [float(e) for e in a.efficiency.split(",")]
    impl = lambda: MLStage(a.run, device=a.device, batch_size=512)
    t0 = time.time()
    sig = simulate_dataset(a.out / "signal", a.signal, seed=101, pienu_fraction=1.0, overwrite=True)
    s_sig = scores(impl, sig, a.out / "pred-signal")
    thr = {k: {e: float(np.quantile(v, 1 - e)) for e in effs} for k, v in s_sig.items()}
    passed = {k: {e: 0 for e in effs} for k in s_sig}
    n_bkg, shard = 0, 0
    while n_bkg < a.background:
        n = min(a.shard, a.background - n_bkg)
        bkg = simulate_dataset(a.out / "background", n, seed=1000 + shard, pienu_fraction=0.0, overwrite=True)
        for k, v in scores(impl, bkg, a.out / "pred-background").items():
            for e in effs: passed[k][e] += int((v >= thr[k][e]).sum())
        n_bkg += n; shard += 1
        print(f"  {n_bkg:,} background events scored ({time.time() - t0:.0f} s)", flush=True)
    print(f"\nπ→μ→e misidentification: thresholds from {a.signal:,} π→eν events, counted on {n_bkg:,} independent π→μ→e "
          f"events ({time.time() - t0:.0f} s)\n")
    print("| π→eν efficiency | implementation | misidentified | misID | binomial error | 90 % CL upper |")
    print("|---:|---|---:|---:|---:|---:|")
    for e in effs:
        for k in ("ml", "classical"):
            m = passed[k][e]; p = m / n_bkg
            print(f"| {e:.2f} | {k} | {m} | {p:.3e} | {np.sqrt(max(p, 1 / n_bkg) * (1 - p) / n_bkg):.1e} | "
                  f"{clopper_pearson_upper(m, n_bkg):.2e} |")


if __name__ == "__main__":
    main()

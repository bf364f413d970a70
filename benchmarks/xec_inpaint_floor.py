"""How well can any inpainter do? The floor of the XEC inpainting metric on the toy.

`evaluate_inpaint` scores a filled sensor by |estimate − npho| / npho, with npho the count the sensor would have
read: photons drawn around their expectation μ (Poisson) plus the readout noise. No inpainter can know those
fluctuations, so even the expectation μ itself (an oracle that knows the shower exactly) keeps an error. This script
simulates signal events, takes every live inner-face sensor with ≥ 100 photons (the metric's selection; a random
dead map samples them the same way) and prints the 68 % relative error of

- the oracle μ (and μ scaled by the factor that minimises the quantile: the floor of any estimate),
- the neighbour mean (the classical baseline the ML inpainter is measured against),
- the neighbour mean of μ (the neighbours' expectations: what averaging can reach without their noise),

with bootstrap errors and each as a ratio to the neighbour mean.

    OMP_NUM_THREADS=1 python benchmarks/xec_inpaint_floor.py               # 400 events, ~30 s
    OMP_NUM_THREADS=1 python benchmarks/xec_inpaint_floor.py --events 1000 --min-photons 300
"""
from __future__ import annotations
import argparse

import numpy as np

from hepnb import metrics as M
from hepnb.detectors.xec import geometry as G
from hepnb.detectors.xec import sim as S
from hepnb.detectors.xec.inpaint import neighbour_table


def rel68(est: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    "68 % of |est − true| / true, with a bootstrap error."
    return M.bootstrap(lambda r: float(np.quantile(np.abs(r), M.CL68)), (est - true) / true, n=100)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=400)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--min-photons", type=float, default=100.0, help="the metric's selection (evaluate_inpaint)")
    a = ap.parse_args(argv)
    cfg = S.SimConfig(**S.PRESETS["signal"])
    rng = np.random.default_rng(a.seed)
    # the simulation's own steps (simulate_run), keeping the expectation μ that the stored events do not carry
    g = S.sample_gammas(rng, a.events, cfg, cfg.energy_min, cfg.energy_max)
    _, mu, _ = S._gamma_light(rng, g, cfg)
    pde, _ = S.calibration(a.seed, 1, cfg)
    npho, _, _ = S.detect(rng, mu, pde, cfg)
    nb = neighbour_table()
    ok = nb >= 0
    def neighbour_mean(v):
        return np.where(ok[None], v[:, nb.clip(0)], 0).sum(2) / ok.sum(1)[None]
    sel = (npho >= a.min_photons) & (G.sensors()["face"] == G.FACES.index("inner"))[None]
    true = npho[sel].astype(float)
    rows = {"oracle μ (the expectation)": mu[sel]}
    scales = np.linspace(0.9, 1.1, 41)
    best = scales[np.argmin([np.quantile(np.abs(s * mu[sel] - true) / true, M.CL68) for s in scales])]
    rows[f"oracle {best:.3f} · μ (the best scale)"] = best * mu[sel]
    rows["neighbour mean of μ"] = neighbour_mean(mu)[sel]
    rows["neighbour mean (classical)"] = neighbour_mean(npho)[sel]
    ref = rel68(rows["neighbour mean (classical)"], true)[0]
    print(f"{a.events} signal events (seed {a.seed}), {sel.sum()} inner-face sensors with ≥ {a.min_photons:g} photons\n")
    print("| estimate | 68 % relative error | / neighbour mean |")
    print("|---|---|---|")
    for name, est in rows.items():
        v, e = rel68(est.astype(float), true)
        print(f"| {name} | {v:.4f} ± {e:.4f} | {v / ref:.3f} |")


if __name__ == "__main__":
    main()

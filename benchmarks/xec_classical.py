"""Resolutions of the XEC classical stages on the toy (the fact sheet's B.5 comparison): σ68 of ΔE/E, u, v, w and the
event time, the 68 % 3-D position error and opening angle, overall and by depth, with bootstrap errors. The test set
(seed 2002) is simulated here; the calibration (`stages.DEFAULT`) was fitted on another (seed 1001).
Prints Markdown tables.

    OMP_NUM_THREADS=1 python benchmarks/xec_classical.py                    # 3000 signal events, ~1 min
    OMP_NUM_THREADS=1 python benchmarks/xec_classical.py --events 500 --preset uniform15to60
    OMP_NUM_THREADS=1 python benchmarks/xec_classical.py --n-deposits 24 --core-width 0.15   # recalibrates (seed 1001)
"""
from __future__ import annotations
import argparse, time

import numpy as np

from hepnb import metrics as M
from hepnb.detectors.xec import sim as S
from hepnb.detectors.xec import stages as X

MEG = {"energy": "1.8 %", "u": "0.25 cm", "v": "0.25 cm", "w": "0.5 cm", "time": "0.060-0.070 ns"}


def q68(x): return float(np.percentile(np.abs(x), 68))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--preset", default="signal", choices=sorted(S.PRESETS))
    ap.add_argument("--seed", type=int, default=2002)
    ap.add_argument("--n-deposits", type=int, default=None, help="shower sub-deposits (the simulation's default: 12)")
    ap.add_argument("--core-width", type=float, default=None, help="shower core width in Molière radii (0.25)")
    a = ap.parse_args()
    shower = {k: v for k, v in (("n_deposits", a.n_deposits), ("core_width", a.core_width)) if v is not None}
    cfg = S.SimConfig(**S.PRESETS[a.preset], events_per_run=max(a.events, 1), **shower)
    cal = X.DEFAULT
    if shower:              # another shower model: calibrate on a separate set, as stages.DEFAULT was
        cal = X.calibrate(S.simulate_run(1001, 1, 2000, S.SimConfig(events_per_run=2000, **shower)))
    t0 = time.perf_counter()
    t = S.simulate_run(a.seed, 1, a.events, cfg)
    t1 = time.perf_counter()
    npho, truth = X.sensor_array(t, "npho"), X.vector_array(t, "uvwTruth")
    fit, lc = X.fit_position(npho)
    uvw = X.shower_correction(fit, cal)
    t2 = time.perf_counter()
    e_true = t.column("energyTruth").to_numpy().astype(float)
    de = X.photon_sum_energy(npho, uvw, cal) / 1000 / e_true - 1
    dt = X.fit_time(X.sensor_array(t, "nphe"), X.sensor_array(t, "time"), uvw, cal) - t.column("timeTruth").to_numpy()
    u_true = X.vector_array(t, "emiVec")
    ang = np.degrees(np.arccos(np.clip((X.direction(uvw, cal.vertex) * u_true).sum(1), -1, 1)))
    d = uvw - truth
    print(f"{a.events} events, preset {a.preset}, seed {a.seed}, {shower or 'default shower'}: simulation {t1 - t0:.0f} s, position fit "
          f"{(t2 - t1) / a.events * 1e3:.1f} ms/event\n")
    rows = [("σ68(ΔE/E)", de, M.sigma68, MEG["energy"], 100, "%"),
            ("σ68(Δu)", d[:, 0], M.sigma68, MEG["u"], 1, "cm"), ("σ68(Δv)", d[:, 1], M.sigma68, MEG["v"], 1, "cm"),
            ("σ68(Δw)", d[:, 2], M.sigma68, MEG["w"], 1, "cm"),
            ("uvw_dist_68pct", np.linalg.norm(d, axis=1), q68, "", 1, "cm"),
            ("σ68(Δt)", dt[np.isfinite(dt)], M.sigma68, MEG["time"], 1, "ns"),
            ("opening angle 68 %", ang, q68, "", 1, "deg"),
            ("light centre σ68(Δu)", lc[:, 0] - truth[:, 0], M.sigma68, "", 1, "cm")]
    print("| quantity | toy classical | MEG II (real data, fact sheet B.5) |")
    print("|---|---|---|")
    for name, x, stat, meg, scale, unit in rows:
        v, err = M.bootstrap(stat, x, n=200)
        print(f"| {name} | {v * scale:.3g} ± {err * scale:.1g} {unit} | {meg} |")
    print("\n| w (cm) | events | σ68(ΔE/E) % | σ68(Δu) cm | σ68(Δv) cm | σ68(Δw) cm | σ68(Δt) ns |")
    print("|---|---|---|---|---|---|---|")
    w = truth[:, 2]
    for lo, hi in ((-1, 2), (2, 5), (5, 10), (10, 20), (20, 42)):
        s = (w >= lo) & (w < hi)
        if s.sum() < 10: continue
        f = lambda x: f"{M.sigma68(x):.3g}"
        print(f"| {max(lo, 0)}-{hi} | {s.sum()} | {M.sigma68(de[s]) * 100:.3g} | {f(d[s, 0])} | {f(d[s, 1])} | "
              f"{f(d[s, 2])} | {f(dt[s & np.isfinite(dt)])} |")


if __name__ == "__main__":
    main()

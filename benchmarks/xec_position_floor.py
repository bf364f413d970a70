"""How well can any position reconstruction do? Floors of `uvw_dist_68pct` on the XEC toy.

The first interaction (`uvwTruth`) is the γ's conversion point; the light comes from the shower that follows it,
`n_deposits` point sources spread along and around the γ direction (`sim.shower`). Every estimate is scored with
the metric of `evaluate` (68 % of the 3-D distance in u, v, w, bootstrap errors) on the same simulated signal
events, as a ratio to the classical local fit on the real (noisy) light:

- the classical local fit (`stages.LocalFit`, calibrated on a separate set) on the light as simulated, and on the
  noiseless light of the same showers (every count at its expectation: no photon statistics, cross-talk or readout
  noise; calibrated on a noiseless set): how much of its error is photon statistics and how much the shower;
- deposit-level oracles that know every deposit of the shower exactly (position and energy) and the γ direction,
  which no light-based reconstruction knows: the energy-weighted centroid moved back by the mean shower depth; the
  maximum-likelihood conversion depth (the deposits' depths are Gamma-distributed behind it) with the deposits' mean
  transverse position; and the same with the maximum-likelihood centre of the known core + halo transverse profile.
- optionally (`--run`), an ML position run (`hepnb.detectors.xec.training`) on the simulated and the noiseless light.

    OMP_NUM_THREADS=2 python benchmarks/xec_position_floor.py                       # 2000 events, ~2 min
    OMP_NUM_THREADS=2 python benchmarks/xec_position_floor.py --run /tmp/xecq/position-n16000-e24
"""
from __future__ import annotations
import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from hepnb import metrics as M
from hepnb.dataset import write_dataset
from hepnb.detectors.xec import geometry as G
from hepnb.detectors.xec import schema as X
from hepnb.detectors.xec import sim as S
from hepnb.detectors.xec import stages as ST


def simulate(n: int, seed: int, cfg: S.SimConfig, noiseless: bool) -> tuple[pa.Table, dict]:
    """`n` events of one run and the showers behind them. Noiseless: every count at its expectation (the same
    showers: they are drawn before the photon statistics)."""
    showers, poisson, shower = [], S.poisson, S.shower
    def keep(rng, g, c):
        sh = shower(rng, g, c)
        showers.append(sh)
        return sh
    S.shower = keep
    if noiseless: S.poisson = lambda rng, lam, gauss_above=50.0: np.asarray(lam, np.float32)
    c = dataclasses.replace(cfg, noise_pe=0.0) if noiseless else cfg
    try:                                                       # runs of events_per_run events, as simulate_dataset
        t = pa.concat_tables([S.simulate_run(seed, 1 + k // c.events_per_run, min(c.events_per_run, n - k), c, k)
                              for k in range(0, n, c.events_per_run)])
    finally:
        S.shower, S.poisson = shower, poisson
    return t, {k: np.concatenate([sh[k] for sh in showers]) for k in ("pos", "energy")}


def dist68(est_uvw: np.ndarray, true_uvw: np.ndarray) -> tuple[float, float]:
    return M.bootstrap(lambda x: float(np.quantile(x, M.CL68)), np.linalg.norm(est_uvw - true_uvw, axis=1), n=200)


def oracles(sh: dict, g_dir: np.ndarray, cfg: S.SimConfig, energy: float) -> dict[str, np.ndarray]:
    "Deposit-level estimates of the conversion point (xyz, cm) from every deposit of each shower."
    from scipy.optimize import brentq
    pos, e, d = sh["pos"], sh["energy"], g_dir
    tmax = np.log(energy / cfg.critical_energy) + 0.5
    a, theta = 1 + cfg.profile_b * max(tmax, 0.1), cfg.radiation_length / cfg.profile_b
    out = {}
    w = np.where(e.sum(1, keepdims=True) > 0, e, 1.0)          # a shower wholly outside the xenon: its deposits
    c = (w[..., None] * pos).sum(1) / w.sum(1, keepdims=True)
    out["energy-weighted centroid − mean depth"] = c - a * theta * d
    t = np.einsum("nkd,nd->nk", pos, d)                       # each deposit's depth along the γ direction
    s = np.empty(len(t))
    for i, ti in enumerate(t):                                 # ML shift of Gamma(a, θ) depths: Σ (a−1)/(t−s) = K/θ
        f = lambda x: (a - 1) * np.sum(1 / (ti - x)) - len(ti) / theta
        lo, hi = ti.min() - 200.0, ti.min() - 1e-9
        s[i] = brentq(f, lo, hi) if f(lo) < 0 < f(hi) else ti.min() - theta
    plane = pos - t[..., None] * d[:, None]                    # transverse positions (plane through the origin ⟂ d)
    out["maximum-likelihood depth + mean transverse position"] = plane.mean(1) + s[:, None] * d
    sc, sh_ = cfg.core_width * cfg.moliere_radius, cfg.halo_width * cfg.moliere_radius
    mu = plane.mean(1)
    for _ in range(30):                                        # EM for the centre of the core + halo mixture
        r2 = ((plane - mu[:, None]) ** 2).sum(-1)
        core = cfg.core_fraction / sc**2 * np.exp(-r2 / (2 * sc**2))
        halo = (1 - cfg.core_fraction) / sh_**2 * np.exp(-r2 / (2 * sh_**2))
        wc = core / np.maximum(core + halo, 1e-300)
        w = wc / sc**2 + (1 - wc) / sh_**2
        mu = (w[..., None] * plane).sum(1) / w.sum(1, keepdims=True)
    out["maximum-likelihood depth + maximum-likelihood transverse centre (core + halo)"] = mu + s[:, None] * d
    return out


def ml_predict(run: Path, table: pa.Table, work: Path, name: str) -> np.ndarray:
    from hepnb.detectors.xec.training import MLStage
    from hepnb.stage import run_stage
    ds = write_dataset(work / name, table, schema=X.EVENTS, overwrite=True)
    p = run_stage(MLStage(run), ds, work / f"p-{name}", overwrite=True).read()
    return np.stack(p.column("pred_uvw").to_numpy(zero_copy_only=False)).astype(float)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--calib", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--run", type=Path, default=None, help="an XEC position run to score on the same events")
    a = ap.parse_args(argv)
    cfg = S.SimConfig(**S.PRESETS["signal"])
    uniform = S.SimConfig(**S.PRESETS["uniform15to60"])
    rows, truth = {}, None
    for noiseless in (False, True):
        t, sh = simulate(a.events, a.seed, cfg, noiseless)
        true = np.stack(t.column("uvwTruth").to_numpy(zero_copy_only=False)).astype(float)
        if truth is None: truth, showers, table = true, sh, t
        else: assert np.array_equal(true, truth), "the noiseless events must be the same showers"
        cal = ST.calibrate(simulate(a.calib, a.seed + 1, uniform, noiseless)[0])
        uvw, _ = ST.fit_position(X.sensor_array(t, "npho"))
        label = "noiseless light (counts at their expectation)" if noiseless else "light as simulated"
        rows[f"classical local fit, {label}"] = ST.shower_correction(uvw, cal)
        if a.run is not None:
            with tempfile.TemporaryDirectory() as work:
                rows[f"ML ({a.run.name}), {label}"] = ml_predict(a.run, t, Path(work), "nl" if noiseless else "real")
    d = np.stack(table.column("emiVec").to_numpy(zero_copy_only=False)).astype(float)
    for name, xyz in oracles(showers, d, cfg, cfg.energy_min).items():
        rows[f"oracle: {name}"] = G.xyz_to_uvw(xyz)
    ref = dist68(rows["classical local fit, light as simulated"], truth)[0]
    print(f"{a.events} signal events (52.8 MeV, seed {a.seed}); classical constants from {a.calib} events of 15–60 MeV\n")
    print("| estimate | uvw_dist_68pct (cm) | / classical |")
    print("|---|---|---|")
    for name, est in rows.items():
        v, e = dist68(est, truth)
        print(f"| {name} | {v:.3f} ± {e:.3f} | {v / ref:.3f} |")


if __name__ == "__main__":
    main()

"""XEC fast simulation against the fact sheet (shared/physics/xec.md B.3, B.8): light linear in energy,
photostatistics, light centroid vs truth, conversion depth, timing vs distance, dead channels, pile-up, seeds."""
import dataclasses

import numpy as np
import pytest

from conftest import run_cli
from hepnb.detectors.xec import geometry as G
from hepnb.detectors.xec import sim as S
from hepnb.detectors.xec.schema import EVENTS, INVALID
from hepnb.schema import validate_table


def arr(t, c):
    a = t.column(c).combine_chunks()
    return np.stack(a.to_numpy(zero_copy_only=False)) if hasattr(a.type, "list_size") else a.to_numpy()


@pytest.fixture(scope="module")
def uniform():
    return S.simulate_run(3, 1, 400, S.SimConfig(**S.PRESETS["uniform15to60"]))


def test_schema_truth_and_units(uniform):
    t = uniform
    validate_table(t, EVENTS, where="sim")
    e = arr(t, "energyTruth")
    assert 0.015 <= e.min() and e.max() <= 0.060                      # GeV
    uvw, xyz = arr(t, "uvwTruth"), arr(t, "xyzTruth")
    assert np.abs(G.xyz_to_uvw(xyz.astype(float)) - uvw).max() < 1e-3
    assert (np.abs(uvw[:, 0]) < 40).all() and (uvw[:, 2] > -0.2).all() and (uvw[:, 2] < 42).all()
    v = arr(t, "emiVec")
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    d = xyz - arr(t, "xyzVTX")
    assert np.allclose(d / np.linalg.norm(d, axis=1, keepdims=True), v, atol=1e-4)     # from the vertex to the point
    ang = arr(t, "emiAng")
    assert np.allclose(np.cos(np.radians(ang[:, 0])), v[:, 2], atol=1e-4) and (np.abs(ang[:, 1]) < 90).all()
    assert arr(t, "event_id")[1] == (1 << 32) + 1 and (arr(t, "run") == 1).all()


def test_light_sum_is_linear_in_energy(uniform):
    "Photons per MeV do not depend on the energy (depth held in a band: collection falls with depth)."
    npho, e, w = arr(uniform, "npho"), arr(uniform, "energyTruth") * 1e3, arr(uniform, "uvwTruth")[:, 2]
    total = np.where(npho < 1e9, npho, 0).sum(1)
    sel = (w > 2) & (w < 10)
    slope, icept = np.polyfit(e[sel], total[sel], 1)
    assert abs(icept) < 0.05 * slope * 15, (slope, icept)
    lo, hi = total[sel & (e < 30)] / e[sel & (e < 30)], total[sel & (e > 45)] / e[sel & (e > 45)]
    assert abs(lo.mean() / hi.mean() - 1) < 0.03
    # the yield: 40 000 photons/MeV times the summed solid angle and the Fresnel transmittance (about 1/4 here)
    assert 0.15 < slope / S.SimConfig().photons_per_mev < 0.35


def test_photostatistics():
    "Photons are Poisson; photoelectrons are photons times the PDE, plus cross-talk on MPPCs, plus noise."
    cfg = S.SimConfig()
    rng = np.random.default_rng(0)
    mu = np.full((400, G.N_SENSORS), 400.0, np.float32)
    pde, _ = S.calibration(0, 1, cfg)
    npho, nphe, pe = S.detect(rng, mu, pde, cfg)
    m = slice(0, 50)                                  # MPPCs
    assert np.allclose(npho[:, m].mean(0), 400, rtol=0.02)
    assert abs(np.mean(npho[:, m].var(0) / (400 + (cfg.noise_pe / pde[m]) ** 2)) - 1) < 0.05
    assert abs(np.mean(pe[:, m].var(0) / pe[:, m].mean(0)) - 1) < 0.05                         # Poisson
    assert np.allclose(nphe[:, m].mean(0), 400 * pde[m] * (1 + cfg.crosstalk), rtol=0.03)
    p = slice(4100, 4150)                             # PMTs: no cross-talk
    assert np.allclose(nphe[:, p].mean(0), 400 * pde[p], rtol=0.03)
    assert 0.05 < pde.min() and pde.max() < 0.3 and pde.std() > 0


def test_light_centroid_follows_the_truth(uniform):
    npho, uvw = arr(uniform, "npho")[:, :G.N_MPPC], arr(uniform, "uvwTruth")
    inner = np.where(npho < 1e9, npho, 0)
    suvw = G.xyz_to_uvw(G.sensors()["pos"][:G.N_MPPC])
    res = []
    for i, k in enumerate(inner.argmax(1)):
        ids = G.within(G.sensors()["pos"][k], 4.0, face="inner")
        c = (suvw[ids, :2] * inner[i, ids, None]).sum(0) / inner[i, ids].sum()
        res.append(c - uvw[i, :2])
    res = np.array(res)
    assert (np.abs(np.median(res, 0)) < 0.25).all() and (np.median(np.abs(res), 0) < 1.5).all(), res


def test_conversion_depth_is_exponential(uniform):
    v, xyz = arr(uniform, "xyzVTX").astype(float), arr(uniform, "xyzTruth").astype(float)
    d = arr(uniform, "emiVec").astype(float)
    entry = v + S._ray_to_radius(v, d, G.R_IN)[:, None] * d
    path = np.linalg.norm(xyz - entry, axis=1)
    lam = S.SimConfig().conversion_length
    assert abs(path.mean() / lam - 1) < 0.12 and abs(np.median(path) / (lam * np.log(2)) - 1) < 0.15


def test_timing_follows_the_distance():
    "A point source: the earliest light reaches each sensor at d / v_eff; in events, time grows with distance."
    cfg = S.SimConfig()
    src = {"pos": G.uvw_to_xyz(np.array([[[0.0, 0, 5]]])), "energy": np.array([[50.0]]), "t": np.zeros((1, 1))}
    mu, t = S.light(src, cfg)
    d = np.linalg.norm(G.sensors()["pos"] - src["pos"][0, 0], axis=1)
    assert np.allclose(t[0], d / cfg.v_eff, rtol=1e-5)
    assert mu[0].sum() > 0.3 * 50 * cfg.photons_per_mev * 0.5
    # a point-like shower (one deposit at the conversion point), fast scintillation: time - tof = d / v_eff + jitter
    point = dict(n_deposits=1, radiation_length=1e-6, core_width=0.0, halo_width=0.0, scint_tau=1e-3, dead_fraction=0)
    for v in (18.0, 9.0):
        tab = S.simulate_run(5, 1, 40, dataclasses.replace(cfg, v_eff=v, **point))
        tm = arr(tab, "time")
        xyz, vtx = arr(tab, "xyzTruth").astype(float), arr(tab, "xyzVTX").astype(float)
        y = tm * 1e9 - arr(tab, "timeTruth")[:, None] - (np.linalg.norm(xyz - vtx, axis=1) / S.C_LIGHT)[:, None]
        dist = np.linalg.norm(G.sensors()["pos"][None] - xyz[:, None], axis=2)
        sel = tm < 1e9
        slope, icept = np.polyfit(dist[sel], y[sel], 1)
        assert abs(slope * v - 1) < 0.01 and abs(icept) < 0.02, (v, slope, icept)
        assert abs(np.std(y[sel] - dist[sel] / v) - cfg.jitter) < 0.01


def test_dead_channels_and_time_threshold(uniform):
    npho, nphe, tm = arr(uniform, "npho"), arr(uniform, "nphe"), arr(uniform, "time")
    dead = npho == INVALID
    assert (dead == (nphe == INVALID)).all() and (tm[dead] == INVALID).all()
    assert (dead == dead[0]).all() and dead[0].sum() == round(0.005 * 4760)          # one map per run
    assert (tm[(npho < 100) & ~dead] == INVALID).all() and (tm[(npho > 200) & ~dead] < 1e-6).all()
    _, other = S.calibration(3, 2, S.SimConfig())
    assert (other != dead[0]).any()                                                      # another run, another map


def test_pileup_preset_has_its_truth():
    cfg = S.SimConfig(**S.PRESETS["pileup"])
    t = S.simulate_run(1, 1, 60, cfg)
    e, dt, uvw = arr(t, "pileupEnergyTruth"), arr(t, "pileupTimeTruth"), arr(t, "pileupUvwTruth")
    has = e > 0
    assert 0.25 < has.mean() < 0.75
    assert (e[has] >= 0.010).all() and (e[has] <= 0.0528 + 1e-6).all() and (np.abs(dt[has]) <= 30).all()
    assert (uvw[~has] == 0).all() and (np.abs(uvw[has, 2]) > 0).all()
    none = S.simulate_run(1, 1, 30, S.SimConfig())
    assert (arr(none, "pileupEnergyTruth") == 0).all()


def test_same_seed_same_data_and_cli(tmp_path):
    cfg = S.SimConfig(events_per_run=30)
    a, b = S.simulate_run(7, 2, 20, cfg), S.simulate_run(7, 2, 20, cfg)
    assert a.equals(b) and not a.equals(S.simulate_run(8, 2, 20, cfg))
    run_cli("simulate", "xec", "--preset", "signal", "--events", 50, "--seed", 4, "--events-per-run", 30,
            "--out", tmp_path / "ds", check=0)
    from hepnb.dataset import open_dataset
    ds = open_dataset(tmp_path / "ds")
    t = ds.read(["run", "event", "energyTruth", "npho"])
    assert ds.num_rows == 50 and set(arr(t, "run")) == {1, 2} and arr(t, "event").max() == 29
    assert np.allclose(arr(t, "energyTruth"), 0.052828)
    again = S.simulate_dataset(tmp_path / "again", 50, seed=4, config=S.SimConfig(events_per_run=30))
    assert again.read(["npho"]).equals(ds.read(["npho"]))
    assert "checksums: ok" in run_cli("validate", tmp_path / "ds", check=0).stdout

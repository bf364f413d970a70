"""ATAR simulation against the fact sheet (shared/physics/atar.md): every number below is quoted there."""
import dataclasses
import numpy as np
import pyarrow.compute as pc
import pytest

from hepnb.detectors.atar import physics as ph
from hepnb.detectors.atar.sim import AtarSimConfig, simulate, _digitize
from hepnb.detectors.atar.schema import EVENTS
from hepnb.schema import validate_table


def flat(t, col):
    return t[col].combine_chunks().flatten().to_numpy(zero_copy_only=False)


def col(t, name):
    return t[name].to_numpy(zero_copy_only=False).astype(float)


@pytest.fixture(scope="module")
def events():
    "40k triggered stops without pile-up (enriched 50/50 mix)."
    return simulate(40_000, seed=11, pileup_rate=0.0)


@pytest.mark.parametrize("mass,T,range_mm", [(ph.M_PI, 10.45, 3.32), (ph.M_PI, 4.12, 0.631), (ph.M_MU, 4.12, 0.785),
                                             (ph.M_MU, 10.0, 3.81), (ph.M_P, 10.0, 0.698), (ph.M_P, 100.0, 41.7)])
def test_range_table_matches_fact_sheet(mass, T, range_mm):
    assert ph.range_table(mass).range(T) == pytest.approx(range_mm, rel=0.02)


@pytest.mark.parametrize("mass,T,dedx", [(ph.M_PI, 1, 11.1), (ph.M_PI, 10, 1.83), (ph.M_MU, 4.12, 2.94), (ph.M_P, 10, 8.19)])
def test_stopping_power_keV_per_um(mass, T, dedx):
    assert ph.bethe_dedx(T, mass) * ph.SI["rho"] / 10 == pytest.approx(dedx, rel=0.02)


def test_decay_kinematics():
    assert ph.T_MU_PI == pytest.approx(4.120, abs=2e-3)
    assert ph.E_E_PI == pytest.approx(69.786, abs=2e-3)
    assert ph.W_MICHEL == pytest.approx(52.830, abs=1e-3)


def test_schema_valid(events):
    validate_table(events, EVENTS, where="simulate")
    assert events.num_rows == 40_000 and pc.all(pc.equal(events["event_id"], pc.cast(pc.add(pc.cast(np.arange(40_000), "int64"), 0), "int64"))).as_py()


def test_pion_stop_depth(events):
    z = col(events, "pion_stop_z")
    # 3.32 mm CSDA range along a beam with 10 mrad divergence and scattering: depth ~ range
    assert z.mean() == pytest.approx(3.32, rel=0.02)
    # momentum bite 2 % -> sigma_R/R ~ 6.8 % (about 0.2 mm), plus 1 % straggling
    assert 0.18 < z.std() < 0.28


def test_muon_range(events):
    mu = col(events, "decay_mode") == 0
    d = np.sqrt(sum((col(events, f"muon_end_{a}")[mu] - col(events, f"pion_stop_{a}")[mu]) ** 2 for a in "xyz"))
    assert d.mean() == pytest.approx(0.785, rel=0.02)
    assert np.isnan(col(events, "muon_end_x")[~mu]).all()  # nulls for pi->e nu


def test_pienu_line_and_mix(events):
    e = col(events, "decay_mode") == 1
    assert e.mean() == pytest.approx(0.5, abs=0.01)
    assert np.allclose(col(events, "positron_energy")[e], 69.786, atol=2e-3)
    p = np.sqrt(sum(col(events, f"positron_p{a}")[e] ** 2 for a in "xyz"))
    assert np.allclose(p, 69.784, atol=2e-3)


def test_michel_spectrum(events):
    mu = col(events, "decay_mode") == 0
    x = np.sort(col(events, "positron_energy")[mu] / ph.W_MICHEL)
    assert x.mean() == pytest.approx(0.700, abs=0.005) and x.var() == pytest.approx(0.0433, abs=0.001)
    assert (x > 40 / ph.W_MICHEL).mean() == pytest.approx(0.46, abs=0.015)
    ks = np.max(np.abs(np.arange(1, len(x) + 1) / len(x) - (2 * x**3 - x**4)))
    assert ks < 1.63 / np.sqrt(len(x))  # KS at 1 % significance


def test_michel_angle_about_muon_spin(events):
    mu = col(events, "decay_mode") == 0
    dmu = np.stack([col(events, f"muon_end_{a}")[mu] - col(events, f"pion_stop_{a}")[mu] for a in "xyz"], 1)
    pe = np.stack([col(events, f"positron_p{a}")[mu] for a in "xyz"], 1)
    cos = -(dmu * pe).sum(1) / np.linalg.norm(dmu, axis=1) / np.linalg.norm(pe, axis=1)
    assert cos.mean() == pytest.approx(1 / 9, abs=0.015)  # <cos> = P/9 with P = 1


def test_decay_times(events):
    tpi = col(events, "pion_decay_time")
    assert tpi.mean() == pytest.approx(26.033, abs=4 * 26.033 / np.sqrt(len(tpi)))
    mu = col(events, "decay_mode") == 0
    tmu = col(events, "muon_decay_time")[mu] - tpi[mu]
    assert tmu.mean() == pytest.approx(2196.98, abs=4 * 2196.98 / np.sqrt(mu.sum()))


def test_mip_most_probable_deposit(events):
    "Positron deposit per crossed plane peaks at the Landau-Vavilov-Bichsel MPV of ~31 keV in 120 um."
    p = np.stack([col(events, f"positron_p{a}") for a in "xyz"], 1)
    cos = np.abs(p[:, 2]) / np.linalg.norm(p, axis=1)
    nh = pc.list_value_length(events["hits_edep"].combine_chunks()).to_numpy()
    ev = np.repeat(np.arange(events.num_rows), nh)
    m, e, plane = flat(events, "hits_particle_mask"), flat(events, "hits_edep_true"), flat(events, "hits_plane")
    sel = (m == 4) & (cos[ev] > 0.97)
    key = ev[sel] * 64 + plane[sel]
    u, inv = np.unique(key, return_inverse=True)
    per_plane = np.bincount(inv, weights=e[sel])
    h, b = np.histogram(per_plane * 1e3, np.arange(10, 80, 1.0))
    mode = b[h.argmax()] + 0.5
    assert mode == pytest.approx(31.5, abs=2.0)


def test_bragg_curve(events):
    "Pion deposits rise from ~0.21 MeV per plane at entry to ~1 MeV in the last planes."
    m, e, plane = flat(events, "hits_particle_mask"), flat(events, "hits_edep_true"), flat(events, "hits_plane")
    nh = pc.list_value_length(events["hits_edep"].combine_chunks()).to_numpy()
    ev = np.repeat(np.arange(events.num_rows), nh)
    pion = m == 1
    first = np.bincount(ev[pion & (plane == 0)], weights=e[pion & (plane == 0)], minlength=events.num_rows)
    assert first.mean() == pytest.approx(0.21, rel=0.08)
    total = np.bincount(ev[pion], weights=e[pion], minlength=events.num_rows)
    # 10.45 MeV, of which the 20 um dead layers (1/7 of the path) take their share
    assert total.mean() == pytest.approx(10.45 * 0.12 / 0.14, rel=0.03)


def test_pileup_multiplicity():
    t = simulate(20_000, seed=5)
    n = col(t, "n_pileup")
    assert n.mean() == pytest.approx(0.3, abs=4 * np.sqrt(0.3 / len(n)))   # 300 kHz x 1 us window
    assert n.var() == pytest.approx(n.mean(), rel=0.1)                    # Poisson
    # distinct pile-up MC events seen per readout event: pion stops in the window (0.3) and Michel
    # positrons of earlier stops' muons, which in equilibrium decay at the stop rate (0.3 per us)
    nh = pc.list_value_length(t["hits_edep"].combine_chunks()).to_numpy()
    ev = np.repeat(np.arange(t.num_rows), nh)
    mc, m = flat(t, "hits_mc_event_id"), flat(t, "hits_particle_mask")
    for bit, expected in ((1, 0.3), (4, 0.3 * (1 - np.exp(-5)))):   # stops simulated from 5 tau_mu back
        s = (mc > 0) & (m == bit)
        seen = len(np.unique(ev[s] * 1000 + mc[s])) / t.num_rows
        assert seen == pytest.approx(expected, abs=4 * np.sqrt(0.3 / t.num_rows))
    contrib = t["hits_contrib_mc_event_id"].combine_chunks().flatten()
    inner = pc.list_value_length(contrib).to_numpy()
    assert (inner >= 1).all() and (inner > 1).any()


def test_decays_in_flight_rate():
    t = simulate(60_000, seed=9, pileup_rate=0.0, decays_in_flight=True, pienu_fraction=0.0)
    p = col(t, "pion_dif").mean()
    assert p == pytest.approx(1.6e-3, abs=4 * np.sqrt(1.6e-3 / 60_000) + 1.6e-4)


def test_physical_mix():
    assert AtarSimConfig.physical().pienu_fraction == pytest.approx(1.2352e-4 / (1 + 1.2352e-4))


def test_same_seed_same_events_different_seed_differs():
    a, b, c = simulate(3000, seed=7), simulate(3000, seed=7), simulate(3000, seed=8)
    assert a.equals(b) and not a.equals(c)


def test_double_pulse_merge():
    cfg = AtarSimConfig(energy_resolution=0.0, time_resolution=0.0, threshold=0.0)
    pieces = dict(ev=np.array([0, 0, 0, 0]), plane=np.array([3, 3, 3, 4]), strip=np.array([10, 10, 10, 10]),
                  time=np.array([0.0, 1.0, 2.8, 0.0]), edep=np.array([0.1, 0.2, 0.3, 0.05]),
                  particle=np.array([0, 1, 2, 2], np.int8), mc=np.array([0, 0, 1, 0]), track=np.arange(4))
    hit, piece_hit, _ = _digitize(np.random.default_rng(0), cfg, pieces)
    # 0 and 1 ns merge (< 1.5 ns); 2.8 ns starts a new pulse; plane 4 is another strip
    assert len(hit["edep_true"]) == 3
    assert sorted(np.round(hit["edep_true"], 6).tolist()) == [0.05, 0.3, 0.3]
    merged = np.argmax(hit["edep_true"] == hit["edep_true"][hit["plane"] == 3].max())
    assert hit["mask"][hit["time"] == 0.0].tolist() and (hit["mask"][(hit["plane"] == 3) & (hit["time"] == 0.0)] == 3).all()


def test_bad_config_is_refused():
    from hepnb.core import HepnbError
    with pytest.raises(HepnbError, match="pienu_fraction"):
        AtarSimConfig(pienu_fraction=1.5)
    with pytest.raises(HepnbError, match="window_end"):
        AtarSimConfig(window_start=10, window_end=0)

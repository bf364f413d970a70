"""XEC event display (issue 14, item 8): the unrolled faces of an event with dead channels, hover text, worst-first
orderings from the evaluator's per-event errors, and the browser's event switches, without a browser."""
import numpy as np
import pyarrow as pa
import pytest

from hepnb.core import HepnbError
from hepnb.dataset import write_dataset
from hepnb.detectors.xec import evaluate as E
from hepnb.detectors.xec.display import DIR_SCALE, EventBrowser, event_figure, figure_data, trace_keys, unrolled
from hepnb.detectors.xec.display_data import EventFilter, EventStore, load_predictions
from hepnb.detectors.xec.geometry import FACES, N_SENSORS, sensors
from hepnb.detectors.xec.sim import simulate_dataset


def _fixed(a):
    a = np.ascontiguousarray(a, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), a.shape[1])


@pytest.fixture(scope="module")
def xec(tmp_path_factory):
    "16 simulated events (0.5 % dead channels) and 'ml' predictions of every stage: truth plus seeded noise."
    tmp = tmp_path_factory.mktemp("xec-display")
    ds = simulate_dataset(tmp / "events", 16, seed=5)
    t = ds.read(["event_id", "uvwTruth", "energyTruth", "timeTruth", "emiAng", "npho"])
    col = lambda c: np.stack(t.column(c).to_numpy(zero_copy_only=False))
    rng = np.random.default_rng(0)
    n, ids = t.num_rows, t.column("event_id")
    npho = col("npho")
    tables = {"xec.position": {"pred_uvw": _fixed(col("uvwTruth") + rng.normal(0, 1.0, (n, 3)))},
              "xec.energy": {"pred_energy": col("energyTruth") * (1 + rng.normal(0, 0.02, n))},
              "xec.time": {"pred_time": col("timeTruth") + rng.normal(0, 0.1, n)},
              "xec.angle": {"pred_angle": _fixed(col("emiAng") + rng.normal(0, 2.0, (n, 2)))},
              "xec.inpaint": {"npho_inpainted": _fixed(np.where(npho > 1e9, 42.0, npho))}}
    preds = {s: {"ml": write_dataset(tmp / s, pa.table({"event_id": ids, **v})).path} for s, v in tables.items()}
    return ds, preds


def test_figure_of_an_event_with_dead_channels(xec):
    ds, preds = xec
    store = EventStore.from_dataset(ds)
    p = load_predictions(store, preds)
    ev = store.event(0)
    dead = np.flatnonzero(ev["dead"])
    assert len(dead) > 10 and np.isnan(ev["npho"][dead]).all()              # the simulation's dead-channel map
    fd = figure_data(ev, p)
    assert len(fd["dead",]["x"]) == len(dead) and len(fd["filled",]["x"]) == 0
    inner = unrolled()["cells"]["inner"]
    z = fd["heat", "inner"]["z"]
    assert np.isnan(z[np.isin(inner, dead)]).all() and np.isfinite(z[~np.isin(inner, dead)]).all()
    filled = figure_data(ev, p, fill="ml")                                     # inpainted: ringed, no longer blank
    assert len(filled["filled",]["x"]) == len(dead) and len(filled["dead",]["x"]) == 0
    assert np.allclose(filled["heat", "inner"]["z"][np.isin(inner, dead)], np.log10(43))
    fig = event_figure(ev, p, color="time")
    assert len(fig.data) == len(trace_keys(p)) and fig.layout.coloraxis.colorbar.title.text == "time [ns]"
    assert not any(t.type == "scattergl" for t in fig.data)             # a report of many figures: no WebGL
    with pytest.raises(HepnbError, match="inpaint"):
        figure_data(ev, p, fill="nobody")


def test_pileup_gamma_is_marked(tmp_path):
    "A pile-up γ appears at its true first interaction (picture x = v, y = u) with its energy and time in the hover."
    from hepnb.detectors.xec.sim import PRESETS, SimConfig
    ds = simulate_dataset(tmp_path / "pu", 8, seed=3, config=SimConfig(**{**PRESETS["pileup"], "pileup_prob": 1.0}))
    store = EventStore.from_dataset(ds)
    ev = store.event(0)
    fd = figure_data(ev)
    pu = ev["pileupUvwTruth"]
    assert ev["pileupEnergyTruth"] > 0 and fd["pileup",]["x"] == [pytest.approx(pu[1])]
    assert fd["pileup",]["y"] == [pytest.approx(pu[0])]
    assert f"E = {ev['pileupEnergyTruth'] * 1e3:.2f} MeV" in fd["pileup",]["text"][0]
    assert "t − t(γ) = " in fd["pileup",]["text"][0]
    single = simulate_dataset(tmp_path / "one", 4, seed=3)
    assert figure_data(EventStore.from_dataset(single).event(0))["pileup",] == {"x": [], "y": []}


def test_hover_text(xec):
    ds, preds = xec
    store = EventStore.from_dataset(ds)
    p = load_predictions(store, preds)
    ev = store.event(3)
    fig = event_figure(ev, p)
    u = unrolled()
    seen = []
    for tr in fig.data:                     # a static figure: each face's cells and PMTs carry id, npho and time
        if tr.name not in (*u["cells"], *(f"{f} PMTs" for f in u["markers"])): continue
        ids = np.array([int(i) for i in tr.text])
        face = FACES[sensors()["face"][ids[0]]]
        assert tr.hovertemplate.startswith(f"<b>{face}</b> sensor %{{text}}<br>npho %{{customdata[0]")
        assert "time %{customdata[1]" in tr.hovertemplate
        values = np.stack([ev["npho"][ids], ev["time"][ids]], 1)
        assert np.array_equal(np.asarray(tr.customdata), values, equal_nan=True)
        seen += ids.tolist()
    assert sorted(seen) == list(range(N_SENSORS))                       # every sensor once
    live = event_figure(ev, p, live=True)
    faces = u["faces"]
    for face in FACES:                      # the browser: invisible hover layers, one per face, 1-D arrays
        tr = next(t for t in live.data if t.name == f"{face} sensors")
        ids = faces[face]
        assert tr.hovertemplate.startswith(f"<b>{face}</b> sensor %{{text}}")
        assert "npho %{customdata" in tr.hovertemplate and "time %{marker.color" in tr.hovertemplate
        assert list(tr.text) == [str(i) for i in ids]
        assert np.array_equal(np.asarray(tr.customdata), ev["npho"][ids], equal_nan=True)
        assert np.array_equal(np.asarray(tr.marker.color), ev["time"][ids], equal_nan=True)
    dead = next(t for t in fig.data if t.name == "dead sensor")
    i = int(np.flatnonzero(ev["dead"])[0])
    assert dead.text[0] == f"{FACES[sensors()['face'][i]]} sensor {i}" and "dead" in dead.hovertemplate
    ml = next(t for t in fig.data if t.name == "first interaction: ml")
    d = E.position_error(ev["uvwTruth"], p["xec.position", "ml"].values["pred_uvw"][3])
    assert f"|Δuvw| = {d:.2f} cm" in ml.text[0] and "ΔE/E" in ml.text[0] and "opening angle" in ml.text[0]


def test_direction_arrows(xec):
    "Truth and predicted arrows start at the true first interaction and part by at most DIR_SCALE × |Δdirection|."
    ds, preds = xec
    store = EventStore.from_dataset(ds)
    p = load_predictions(store, preds)
    for row in range(4):
        ev = store.event(row)
        fd = figure_data(ev, p)
        t, m = fd["truth_dir",], fd["dir", "ml"]
        assert (t["x"][0], t["y"][0]) == (ev["uvwTruth"][1], ev["uvwTruth"][0])
        assert (m["x"][0], m["y"][0]) == (t["x"][0], t["y"][0])          # one start, one frame: comparable arrows
        a = np.radians(E.angle_error(ev["emiVec"][None], p["xec.angle", "ml"].values["pred_angle"][row][None])[0])
        spread = np.hypot(np.diff(t["x"]) - np.diff(m["x"]), np.diff(t["y"]) - np.diff(m["y"]))[0]
        assert 0 < spread <= DIR_SCALE * 2 * np.sin(a / 2) + 1e-6


def test_worst_first_follows_the_evaluator(xec):
    ds, preds = xec
    b = EventBrowser(ds.path, preds)
    metrics = {"xec.position": ("position_error:ml", "distance"),
               "xec.energy": ("energy_error:ml", "relative_residual"),
               "xec.time": ("time_error:ml", "residual"), "xec.angle": ("angle_error:ml", "opening_angle")}
    for stage, (metric, key) in metrics.items():
        _, arrays = E.evaluate(ds, {(stage, "ml"): preds[stage]["ml"]})
        per_event = np.abs(arrays[stage, "ml"][key])                         # the evaluator's own per-event values
        assert np.allclose(b.table[metric].to_numpy(), per_event, rtol=1e-5)
        b.apply_filter(stage=metric)
        assert b.rows.tolist() == np.argsort(-per_event, kind="stable").tolist() and b.row == b.rows[0]
        assert f"{metric} = " in b.status()
    with pytest.raises(HepnbError, match="cannot order by"):
        b.apply_filter(stage="no_such_error:ml")


def test_browser_switches_events(xec):
    ds, preds = xec
    b = EventBrowser(ds.path, preds, color="npho")
    i = b._index["heat", "inner"]
    first = np.asarray(b.fig.data[i].z).copy()
    b.next()
    assert b.pos == 1 and b.event["row"] == b.rows[1]
    z = np.asarray(b.fig.data[i].z)
    assert not np.array_equal(z, first, equal_nan=True)
    assert np.array_equal(z, figure_data(b.event, b.preds)["heat", "inner"]["z"], equal_nan=True)
    assert b.fig.layout.title.text.startswith(f"event_id {b.event['event_id']}")
    key = int(b.store.event_id[5])
    b.show_key(key)
    assert b.event["event_id"] == key and b.w_key.value == key
    b.set_fill("ml")
    assert len(b.fig.data[b._index["filled",]].x) == b.event["dead"].sum()
    w = b.table["w"].to_numpy()
    b.apply_filter(depth=(float(np.median(w)), 100.0))
    assert (w[b.rows] >= np.median(w)).all() and 0 < len(b.rows) < len(w)
    b.apply_filter(EventFilter(energy=(60.0, 100.0)))              # signal events: 52.8 MeV
    assert len(b.rows) == 0 and "no event" in b.w_status.value
    html = b.static_figure().to_html(include_plotlyjs=False)
    assert "sensor %{text}" in html


def test_bad_predictions_are_refused(xec, tmp_path):
    ds, preds = xec
    t = pa.table({"event_id": np.arange(3, dtype=np.int64), "pred_uvw": _fixed(np.zeros((3, 3)))})
    short = write_dataset(tmp_path / "short", t)
    with pytest.raises(HepnbError, match="hold 3 events"):
        EventBrowser(ds.path, {"xec.position": {"ml": short.path}})
    with pytest.raises(HepnbError, match=r"pred_energy"):
        EventBrowser(ds.path, {"xec.energy": {"ml": preds["xec.position"]["ml"]}})
    bad = pa.table({"event_id": np.arange(2), "npho": _fixed(np.ones((2, 10))), "time": _fixed(np.ones((2, 10)))})
    with pytest.raises(HepnbError, match=r"column npho\]: expected 4760 values per event"):
        EventStore(bad)


def test_phoenix_export(xec, tmp_path):
    "Phoenix JSON in mm: every lit sensor once, dead sensors, truth and predicted points, γ lines from the vertex."
    import json
    from hepnb.detectors.xec.display import write_phoenix
    from hepnb.detectors.xec.geometry import uvw_to_xyz
    ds, preds = xec
    store = EventStore.from_dataset(ds)
    p = load_predictions(store, preds)
    evs = [store.event(r) for r in (0, 3)]
    path = write_phoenix(tmp_path / "xec.json", evs, preds=p)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["xec.json"]
    doc = json.loads(path.read_text())
    for ev in evs:
        e = doc[f"event {ev['event_id']}"]
        lit = [h for k, v in e["Hits"].items() if k.startswith("sensors") for h in v]
        want = np.flatnonzero((ev["npho"] >= 100) & ~ev["dead"])
        assert sorted(h["sensor"] for h in lit) == want.tolist()
        assert sorted(h["sensor"] for h in e["Hits"]["dead sensors"]) == np.flatnonzero(ev["dead"]).tolist()
        h = lit[0]
        assert h["pos"] == pytest.approx((sensors()["pos"][h["sensor"]] * 10).tolist(), abs=1e-2)
        assert h["npho"] == pytest.approx(float(ev["npho"][h["sensor"]]), rel=1e-4)
        first = e["Vertices"]["truth"][-1]
        assert first["pos"] == pytest.approx((uvw_to_xyz(ev["uvwTruth"][None].astype(float))[0] * 10).tolist(), abs=1e-2)
        ml = e["Vertices"]["first interaction: ml"][0]
        pred = p["xec.position", "ml"].values["pred_uvw"][ev["row"]]
        assert ml["pos"] == pytest.approx((uvw_to_xyz(pred[None].astype(float))[0] * 10).tolist(), abs=1e-2)
        for v in (vv for vs in e["Vertices"].values() for vv in vs):
            assert [v["x"], v["y"], v["z"]] == v["pos"]
        line = np.asarray(e["Tracks"]["γ: ml"][0]["pos"])
        d = line[-1] - line[0]
        want_dir = E.direction_from_angles(p["xec.angle", "ml"].values["pred_angle"][ev["row"]][None].astype(float))[0]
        assert np.allclose(d / np.linalg.norm(d), want_dir, atol=1e-4) and len(line) >= 3
        assert e["Tracks"]["γ: ml"][0]["color"].startswith("0x")
        assert e["E truth [MeV]"] == pytest.approx(ev["energyTruth"] * 1e3, rel=1e-4) and "E ml [MeV]" in e

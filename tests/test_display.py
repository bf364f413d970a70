"""ATAR event display (issue 4): the browser's widget logic without a browser, Phoenix export, the static
report offline in Chromium, and the live browser in a real JupyterLab."""
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import CHROMIUM_ARGS, ROOT, chromium_path, offline_page, skip_without_chromium
from hepnb.core import HepnbError
from hepnb.dataset import write_derived
from hepnb.detectors.atar import evaluate as E
from hepnb.detectors.atar.display import EventBrowser
from hepnb.detectors.atar.display_data import (EventFilter, EventStore, event_table, load_predictions, select_events,
                                               worst_events)
from hepnb.detectors.atar.display_views import (N_SLOTS, PARTICLE_SLOTS, figure_data, linked_hits, static_event_figure,
                                                strip_extent, to_phoenix, write_phoenix)
from hepnb.detectors.atar.sim import simulate_dataset
from hepnb.detectors.atar.stages import BraggPeakStop, GroupRules, HitRules, PromptEnergy, TrackEnds
from hepnb.stage import run_stage


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    "A small dataset with pile-up and the classical chain's predictions (no training: seconds)."
    tmp = tmp_path_factory.mktemp("display")
    ds = simulate_dataset(tmp / "ds", 300, seed=11)
    gc = run_stage(GroupRules(), ds, tmp / "gc")
    ps = run_stage(BraggPeakStop(), ds, tmp / "ps", upstream={"atar.group_classifier": gc})
    ec = run_stage(PromptEnergy(), ds, tmp / "ec", upstream={"atar.pion_stop": ps})
    preds = {"atar.group_classifier": {"classical": gc.path}, "atar.pion_stop": {"classical": ps.path},
             "atar.event_classifier": {"classical": ec.path}}
    return ds, preds, tmp


@pytest.fixture(scope="module")
def more_stages(chain):
    "The hit splitter's and the end points' classical predictions of the same events."
    ds, preds, tmp = chain
    up = {"atar.group_classifier": preds["atar.group_classifier"]["classical"], "atar.pion_stop": preds["atar.pion_stop"]["classical"]}
    hs = run_stage(HitRules(), ds, tmp / "hs", upstream=up)
    ep = run_stage(TrackEnds(), ds, tmp / "ep", upstream=up)
    return {"atar.hit_splitter": {"classical": hs.path}, "atar.endpoints": {"classical": ep.path}}


@pytest.fixture()
def browser(chain):
    ds, preds, _ = chain
    return EventBrowser(ds, preds)


def _hits(b, view):
    "Hit indices drawn in a 2-D view (0: XZ, 1: YZ) and the x (z) values of the traces, in trace order."
    idx = np.concatenate([b.data["hits", k, view]["index"] for k in range(N_SLOTS)])
    xs = np.concatenate([np.asarray(b._trace["hits", k, view].x, float) for k in range(N_SLOTS)])
    return idx, xs


def test_next_and_event_id_controls_change_the_event_drawn(browser):
    b = browser
    assert b.fig2d.layout.title.text.startswith("event_id 0 ")
    b.w_next.click()
    ev = b.store.event(1)
    assert b.fig2d.layout.title.text.startswith("event_id 1 ") and b.w_event_id.value == 1
    for view in (0, 1):
        idx, xs = _hits(b, view)
        assert sorted(idx) == list(np.flatnonzero(ev["hits_strip_type"] == view))
        np.testing.assert_array_equal(xs, ev["hits_z"][idx])        # the figure holds this event's hits
    b.w_event_id.value = 57
    assert b.row == 57 and b.w_pos.value == 58 and "event_id 57 " in b.fig2d.layout.title.text      # "#" counts from 1
    b.w_prev.click()
    assert b.row == 56
    n_traces = len(b.fig2d.data), len(b.fig3d.data)
    b.w_event_id.value = 10**6                                       # unknown: an error in the status line, no change
    assert "not in the dataset" in b.w_status.value and b.row == 56
    with pytest.raises(HepnbError, match="not in the dataset"):
        b.show_event_id(10**6)
    assert (len(b.fig2d.data), len(b.fig3d.data)) == n_traces        # traces are reused, never added


def test_colour_modes_put_hits_in_the_right_traces(browser):
    b = browser
    b.w_event_id.value = 3
    ev = b.event
    mask = ev["hits_particle_mask"]
    for k, (name, bit, colour) in enumerate(PARTICLE_SLOTS):
        for view in (0, 1):
            tr, idx = b._trace["hits", k, view], b.data["hits", k, view]["index"]
            assert (mask[idx] == bit).all() and tr.marker.color == colour
            assert sorted(idx) == list(np.flatnonzero((mask == bit) & (ev["hits_strip_type"] == view)))
    b.w_color.value = "time_group"
    for k in range(N_SLOTS):
        idx = b.data["hits", k, 0]["index"]
        assert (ev["hits_time_group"][idx] % N_SLOTS == k).all()
        if len(idx): assert b._trace["hits", k, 0].name.startswith("group ")
    b.w_color.value = "affinity_pion:classical"
    p = b.preds["atar.group_classifier", "classical"].hit_group_values(b.row, ev["hits_time_group"])[:, 0]
    idx = b.data["hits", 0, 0]["index"]
    np.testing.assert_allclose(np.asarray(b._trace["hits", 0, 0].marker.color, float), p[idx])
    assert all(len(b._trace["hits", k, 0].x) == 0 for k in range(1, N_SLOTS))   # one continuous trace per view
    b.w_color.value = "predicted:classical"
    assert b._trace["hits", 0, 0].name == "predicted π" and isinstance(b._trace["hits", 0, 0].marker.color, str)


def test_filters_select_the_events_browsed(browser, chain):
    b = browser
    st = b.store
    b.w_mode.value = 1
    b.w_pileup.value = "with"
    assert len(b.rows) > 5
    assert (st.events["decay_mode"][b.rows] == 1).all() and (st.events["n_pileup"][b.rows] > 0).all()
    expected = np.flatnonzero((st.events["decay_mode"] == 1) & (st.events["n_pileup"] > 0))
    assert sorted(b.rows) == list(expected)
    b.w_next.click()
    assert b.row == b.rows[1]
    lo, hi = 5.0, 40.0
    b.w_time.value = (lo, hi)
    t = st.events["pion_decay_time"][b.rows]
    assert ((t >= lo) & (t <= hi)).all() and b.filter.decay_time == (lo, hi)
    b.w_mode.value, b.w_pileup.value, b.w_time.value = -1, "any", (b.w_time.min, b.w_time.max)
    assert len(b.rows) == st.n
    b.w_stage.value = "pion_stop_error:classical"
    err = b.table["pion_stop_error:classical"].to_numpy()
    assert b.row == int(np.nanargmax(err)) and (np.diff(err[b.rows]) <= 0).all()
    b.w_stage.value = "misclassified:classical"
    s = b.preds["atar.event_classifier", "classical"].event["p_pienu"]
    assert sorted(b.rows) == list(np.flatnonzero((s > 0.5) != (st.events["decay_mode"] == 1)))
    b.w_stage.value = "wrong_groups:classical"
    assert len(b.rows) and (b.table["wrong_groups:classical"].to_numpy()[b.rows] > 0).all()
    b.apply_filter(EventFilter(decay_mode=0, stage="pion_stop_error:classical", decay_time=(1e6, 2e6)))
    assert len(b.rows) == 0 and "no event" in b.w_status.value


def test_selection_is_linked_between_views(browser):
    b = browser
    ev = b.event
    x_hits = np.flatnonzero(ev["hits_strip_type"] == 0)
    h = int(x_hits[len(x_hits) // 2])
    b.select_hits([h])
    sel = b.selected
    assert h in sel
    other = sel[ev["hits_strip_type"][sel] == 1]
    assert len(other) and (ev["hits_time_group"][other] == ev["hits_time_group"][h]).all()
    assert (np.abs(ev["hits_z"][other] - ev["hits_z"][h]) <= 0.15).all()
    assert sorted(b.data["selected", 0]["index"]) == sorted(sel[ev["hits_strip_type"][sel] == 0])
    assert len(b._trace["selected", 1].x) == len(other) and len(b._trace["selected", 3].x) == 3 * len(sel)
    assert f"{len(sel)} selected hits" in b.w_hits.value
    b.w_next.click()
    assert len(b.selected) == 0 and len(b._trace["selected", 0].x) == 0   # a new event clears the selection
    with pytest.raises(HepnbError, match="hit indices"):
        b.select_hits([10**5])


def test_every_stage_is_displayable_with_the_evaluators_metrics(chain, more_stages):
    "Hit-splitter labels and end points with their bands are drawn; the per-event metrics are the evaluator's."
    ds, preds, _ = chain
    b = EventBrowser(ds, {**preds, **more_stages})
    # hit labels: a colouring; the worst-first selection counts the hits the evaluator calls wrong
    b.w_color.value = "hit_label:classical"
    ev, hs = b.event, b.preds["atar.hit_splitter", "classical"]
    prob = hs.hit_values(b.row, len(ev["hits_z"]))
    assert b._trace["hits", 0, 0].name.startswith("hit label")
    wrong = E.label_errors(E.hit_labels(ev["hits_particle_mask"]), prob)
    assert b.table["wrong_hits:classical"][b.row] == wrong.sum()
    base, hs_ds = ds, more_stages["atar.hit_splitter"]["classical"]
    from hepnb.dataset import open_dataset
    rows, _ = E.evaluate_hits(base, open_dataset(hs_ds), "classical")
    exact = next(r["value"] for r in rows if r["metric"] == "hit_exact_match")
    total_wrong = b.table["wrong_hits:classical"].sum()
    assert total_wrong == pytest.approx((1 - exact) * len(b.store.hits["hits_z"]), abs=0.5)
    # end points: true and predicted ends of every group, with the 16–84 % bands as error bars
    b.w_stage.value = "endpoint_error:classical"
    ev = b.event
    n_groups = int(ev["hits_time_group"].max()) + 1
    pred = b._trace["pred_ends", "classical", 3]
    assert len(b._trace["truth_ends", 0].x) == 2 * n_groups and 0 < len(pred.x) <= 2 * n_groups
    err = b.table["endpoint_error:classical"].to_numpy()
    assert b.row == int(np.nanargmax(err))
    _, arrays = E.evaluate_endpoints(base, open_dataset(more_stages["atar.endpoints"]["classical"]), "classical", n_boot=2)
    per_group = np.fmax(arrays["start"]["error3d"], arrays["end"]["error3d"])
    assert np.nanmax(err) == pytest.approx(np.nanmax(per_group), rel=1e-6)
    # the pion-stop error is the evaluator's, event by event
    _, a = E.evaluate_pion_stop(base, open_dataset(preds["atar.pion_stop"]["classical"]), "classical", n_boot=2)
    mine = b.table["pion_stop_error:classical"].to_numpy()
    np.testing.assert_allclose(np.sort(mine[np.isfinite(mine)]), np.sort(a["error3d"]), rtol=1e-6)
    # the 3-D view is framed on the detector and draws its outline
    g = b.store.geometry
    assert b.fig3d.layout.scene.xaxis.range[1] >= g.half_width and b.fig3d.layout.scene.zaxis.range[1] >= g.depth
    assert np.nanmax(np.asarray(b._trace["outline", 3].z, float)) == pytest.approx(g.depth, rel=1e-6)


def test_layout_numbering_and_static_counterpart(browser):
    "No fixed width, the legend right of the views, '#' and the status count alike, a static figure for exported pages."
    b = browser
    assert b.fig2d.layout.width is None and b.fig3d.layout.width is None and b.fig2d.layout.showlegend is False
    names = {t.name for t in b.fig2d.data if len(t.x) and t.name != "selected"}
    assert names and all(f"{n}</span>" in b.w_legend.value for n in names)     # the legend line names what is drawn
    b.w_pos.value = 3
    assert b.pos == 2 and b.w_status.value.startswith("#3 of ") and b.fig2d.layout.title.text.startswith(
        f"event_id {b.store.event_id[b.row]} ")
    # the 3-D view can be switched off while stepping (its traces keep the old event), and on again
    ev_before = np.asarray(b._trace["hits", 0, 3].z, float).copy()
    b.w_3d.value = False
    b.w_next.click()
    assert b._box3d.layout.display == "none" and np.array_equal(np.asarray(b._trace["hits", 0, 3].z, float), ev_before,
                                                                  equal_nan=True)
    b.w_3d.value = True
    z3 = np.asarray(b._trace["hits", 0, 3].z, float).reshape(-1, 3)[:, 0]
    np.testing.assert_allclose(np.sort(z3), np.sort(b.event["hits_z"][b.data["hits", 0, 3]["index"]]), rtol=1e-6)
    mb = b._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in mb and "Plotly.newPlot" in mb["text/html"]
    assert "VBox" not in mb["text/plain"] and mb["text/plain"].startswith("EventBrowser: #4 of")


def test_strips_in_3d_are_segments_along_the_unmeasured_coordinate(chain):
    ds, preds, _ = chain
    st = EventStore.from_dataset(ds)
    ev = st.event(2)
    fd = figure_data(ev, "particle", extent="full")
    for k in range(N_SLOTS):
        d, idx = fd["hits", k, 3], fd["hits", k, 3]["index"]
        x, y, z = (np.asarray(d[a], float).reshape(-1, 3) for a in "xyz")
        isx = ev["hits_strip_type"][idx] == 0
        np.testing.assert_allclose(x[isx, 0], ev["hits_coord"][idx][isx])          # x strips: x measured,
        np.testing.assert_allclose(y[isx, :2], np.tile([-10, 10], (isx.sum(), 1)))  # y spans the strip
        np.testing.assert_allclose(y[~isx, 1], ev["hits_coord"][idx][~isx])
        np.testing.assert_allclose(z[:, 0], ev["hits_z"][idx])
        assert np.isnan(z[:, 2]).all()                                             # a gap between segments
    lo, hi = strip_extent(ev, mode="group")
    assert ((hi - lo) <= 20 + 1e-4).all() and ((hi - lo) < 5).mean() > 0.5         # most strips find partners


def test_bad_inputs_raise_hepnb_errors(chain, tmp_path):
    ds, preds, tmp = chain
    t = ds.read()
    with pytest.raises(HepnbError, match=r"hits_coord"):
        EventStore(t.drop_columns(["hits_coord"]), where="x.parquet")
    st = EventStore.from_dataset(ds)
    with pytest.raises(HepnbError, match="produced by stage atar.group_classifier"):
        load_predictions(st, {"atar.pion_stop": {"ml": preds["atar.group_classifier"]["classical"]}})
    other = simulate_dataset(tmp_path / "other", 300, seed=12)
    with pytest.raises(HepnbError, match="another base dataset"):
        load_predictions(EventStore.from_dataset(other), {"atar.pion_stop": {"c": preds["atar.pion_stop"]["classical"]}})
    with pytest.raises(HepnbError, match="hold 300 events, the dataset shown holds 100"):
        load_predictions(EventStore(t.slice(0, 100)), {"atar.pion_stop": {"c": preds["atar.pion_stop"]["classical"]}})
    with pytest.raises(HepnbError, match="not in the dataset"):
        st.rows_of([123456])
    with pytest.raises(HepnbError, match="group-classifier predictions"):
        figure_data(st.event(0), "predicted")
    with pytest.raises(HepnbError, match=r"cannot order by .pion_stop_error:ml.: not available"):
        select_events(event_table(st), EventFilter(stage="pion_stop_error:ml"))


def test_quantile_bands_and_angle_errors_from_prediction_datasets(chain, tmp_path):
    "Hand-made ML-style predictions: pion stop with quantiles, positron direction (unit vectors) with a known error."
    ds, _, _ = chain
    t = ds.read(["event_id", "pion_stop_x", "pion_stop_y", "pion_stop_z", "positron_px", "positron_py", "positron_pz"])
    rng = np.random.default_rng(5)
    cols = {"event_id": t["event_id"]}
    for a in "xyz":
        m = t[f"pion_stop_{a}"].to_numpy() + 0.1
        cols[f"pred_pion_stop_{a}"] = pa.array(m.astype(np.float32))
        cols[f"pred_pion_stop_{a}_q16"] = pa.array((m - 0.2).astype(np.float32))
        cols[f"pred_pion_stop_{a}_q84"] = pa.array((m + 0.3).astype(np.float32))
    ps = write_derived(tmp_path / "ps", pa.table(cols), ds, producer={"stage": "atar.pion_stop", "kind": "ml"})
    p = np.stack([t[f"positron_p{a}"].to_numpy() for a in "xyz"], 1) + rng.normal(0, 5, (t.num_rows, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    d = write_derived(tmp_path / "dir", pa.table({"event_id": t["event_id"], **{f"pred_positron_u{a}": pa.array(p[:, i].astype(np.float32))
                                                                              for i, a in enumerate("xyz")}}), ds,
                      producer={"stage": "atar.positron_angle", "kind": "ml"})
    b = EventBrowser(ds, {"atar.pion_stop": ps.path, "atar.positron_angle": d.path})
    ev = b.event
    tr = b._trace["pred_stop", "ml", 0]                       # XZ view: x axis is z, y axis is x
    assert tr.x[0] == pytest.approx(ev["pion_stop_z"] + 0.1, abs=1e-5)
    assert tr.error_x.array[0] == pytest.approx(0.3, abs=1e-5) and tr.error_x.arrayminus[0] == pytest.approx(0.2, abs=1e-5)
    assert tr.error_y.visible and b._trace["pred_stop", "ml", 3].error_z.array[0] == pytest.approx(0.3, abs=1e-5)
    b.w_stage.value = "angle_error:ml"
    err = b.table["angle_error:ml"].to_numpy()
    assert b.row == int(np.nanargmax(err)) and np.nanmax(err) > 1
    # the evaluator's definition: no angle for positrons produced after the readout window (they left no hits)
    late = ds.read(["positron_time"]).column(0).to_numpy() >= b.store.window_end
    assert late.any() and np.array_equal(np.isnan(err), late)
    arrow = b._trace["pred_positron", "ml", 3]
    v = np.array([arrow.x[1] - arrow.x[0], arrow.y[1] - arrow.y[0], arrow.z[1] - arrow.z[0]])
    assert np.linalg.norm(v) == pytest.approx(4.0, rel=1e-5)
    w = worst_events(b.store, b.preds, "angle_error:ml", 3)
    assert w["row"].to_list() == list(b.rows[:3])


def test_phoenix_round_trip(chain, tmp_path):
    ds, preds, _ = chain
    st = EventStore.from_dataset(ds)
    pr = load_predictions(st, preds)
    evs = [st.event(r) for r in (0, 4, 9)]
    path = write_phoenix(tmp_path / "events.json", evs, preds=pr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.json"]          # atomic: no temp file left
    doc = json.loads(path.read_text())
    assert list(doc) == ["event 0", "event 4", "event 9"]
    for ev in evs:
        e = doc[f"event {ev['event_id']}"]
        assert e["event number"] == ev["event_id"] and "run number" in e
        hits = [h for coll in e["Hits"].values() for h in coll]
        assert sorted(h["hit"] for h in hits) == list(range(len(ev["hits_z"])))
        for coll in e["Hits"].values():
            assert len({h["color"] for h in coll}) == 1 and all(h["type"] == "Line" for h in coll)
        for h in hits:
            i, (x0, y0, z0, x1, y1, z1) = h["hit"], h["pos"]
            measured = (x0, x1) if ev["hits_strip_type"][i] == 0 else (y0, y1)
            assert measured == pytest.approx((ev["hits_coord"][i],) * 2, abs=1e-4)
            assert (z0, z1) == pytest.approx((ev["hits_z"][i],) * 2, abs=1e-4)
            assert h["E [keV]"] == pytest.approx(ev["hits_edep"][i] * 1e3, rel=1e-4)
        truth = e["Vertices"]["truth"][0]["pos"]
        assert truth == pytest.approx([ev["pion_stop_x"], ev["pion_stop_y"], ev["pion_stop_z"]], abs=1e-4)
        for tks in e["Tracks"].values():
            for tk in tks:
                assert len(tk["pos"]) >= 3 and all(len(p) == 3 for p in tk["pos"])   # Phoenix extrapolates below 3 points
                assert tk["color"].startswith("0x") and int(tk["color"], 16) >= 0   # read with parseInt(color, 16)
        for vs in e["Vertices"].values():
            for v in vs:                                                            # the phoenix-helpers checker wants x, y, z
                assert [v["x"], v["y"], v["z"]] == v["pos"]
        assert "predicted pion stop (classical)" in e["Vertices"]
    with pytest.raises(HepnbError, match="affinity"):
        to_phoenix(evs[0], preds=pr, color_by="affinity_pion", group_impl="classical")


def test_static_figure_has_the_views_and_overlays(chain):
    ds, preds, _ = chain
    st = EventStore.from_dataset(ds)
    pr = load_predictions(st, preds)
    fig = static_event_figure(st.event(5), preds=pr)
    names = {t.name for t in fig.data}
    assert {"true pion stop", "predicted pion stop (classical, 16–84 %)"} <= names
    assert {t.type for t in fig.data} == {"scatter", "scatter3d"}
    n_hits = sum(len(t.customdata) for t in fig.data if t.type == "scatter" and t.customdata is not None)
    assert n_hits == len(st.event(5)["hits_z"])


@pytest.fixture(scope="module")
def report(chain, tmp_path_factory):
    from hepnb.report import run_notebook
    ds, preds, _ = chain
    out = tmp_path_factory.mktemp("display_report")
    html = run_notebook(ROOT / "nbs/stages/display_atar.ipynb", out,
                        {"dataset": str(ds.path), "predictions": {s: {i: str(p) for i, p in d.items()} for s, d in preds.items()},
                         "n_events": 2, "phoenix_path": str(out / "events.phoenix.json")})
    return html, out


def test_display_report_is_self_contained(report):
    import re
    html, out = report
    text = html.read_text()
    assert not re.search(r'<(script|link)[^>]*(src|href)="https?://', text)
    assert "application/vnd.jupyter.widget-state+json" not in text       # no widget bundles
    assert "VBox(" not in text and "hepnb-static-figure" in text          # the browser's static counterpart
    assert text.count("Plotly.newPlot") >= 7                         # the browser's event and 3 stages x 2 events
    print(f"display report: {len(text) / 1e6:.2f} MB ({html.name}), folder {sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.1f} MB")
    assert len(text) < 1_500_000
    doc = json.loads((out / "events.phoenix.json").read_text())
    assert len(doc) >= 1 and all("Hits" in e for e in doc.values())


def test_display_report_renders_offline_in_chromium(report):
    html, _ = report
    t0 = time.perf_counter()
    with offline_page(html) as (page, external, errors):
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 7", timeout=30_000)
        page.wait_for_function("document.querySelectorAll('.hepnb-static-figure .main-svg').length >= 1", timeout=30_000)
        print(f"display report opened and drawn in {time.perf_counter() - t0:.1f} s in headless Chromium (with its start)")
        drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .map(d => d.querySelectorAll('.scatterlayer .trace .point').length)""")
        titles = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .gtitle')].map(t => t.textContent)")
    assert external == [] and errors == []
    assert len(drawn) >= 7 and min(drawn) > 0                       # every event view drew hit markers
    assert any(t.startswith("pion_stop_error:classical") for t in titles)


# ---- the live browser in a real JupyterLab

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAB_NOTEBOOK_CELLS = [
    "import os\n"
    "from hepnb.detectors.atar.sim import simulate, simulate_dataset\n"
    "from hepnb.detectors.atar.display import EventBrowser\n"
    "ds = simulate_dataset('events', 40, seed=5, overwrite=True)\n"
    "hits = int(os.environ.get('HEPNB_SWITCH_HITS', '0'))   # benchmarks/README: events merged to this many hits\n"
    "if hits:\n"
    "    from bench_display import merged_events\n"
    "    ds = merged_events(simulate(400, seed=5), hits, 40)",
    "browser = EventBrowser(ds, three_d=os.environ.get('HEPNB_SWITCH_3D', '1') == '1')\nbrowser",
]

SWITCHES = 12           # timed event switches (click -> title of the next event drawn), recorded, not asserted
TIMING = bool(os.environ.get("HEPNB_SWITCH_HITS") or os.environ.get("HEPNB_SWITCH_3D"))   # benchmarks/bench_display_lab.py


# hits in the XZ/YZ figure: in the page's plotly data and as drawn SVG markers
HITS_DRAWN = """() => { const gd = document.querySelector('.js-plotly-plot');
    const hit = gd.data.map(t => (t.hovertemplate || '').startsWith('hit'));
    const data = gd.data.filter((t, i) => hit[i]).reduce((s, t) => s + (t.x ? t.x.length : 0), 0);
    const index = el => (el.__data__ && el.__data__[0] && el.__data__[0].trace) ? el.__data__[0].trace.index : -1;
    const svg = [...gd.querySelectorAll('.scatterlayer .trace')].filter(el => hit[index(el)])
        .reduce((s, el) => s + el.querySelectorAll('.point').length, 0);
    return {data, svg}; }"""


# plotly dims unselected points to 0.2 of their opacity
SELECTION_STATE = """() => { const gd = document.querySelector('.js-plotly-plot');
    const dim = [...gd.querySelectorAll('.scatterlayer .trace .point')].filter(p => parseFloat(getComputedStyle(p).opacity) < 0.5);
    return {boxes: (gd.layout.selections || []).length, dimmed: dim.length,
            selecting: gd.data.filter(t => t.selectedpoints && t.selectedpoints.length !== undefined).length}; }"""


WIDTHS = """() => { const gd = document.querySelector('.js-plotly-plot'), r = gd.getBoundingClientRect();
    const t = gd.querySelector('.gtitle').getBoundingClientRect();
    return {fig: r.width, cell: gd.closest('.jp-OutputArea-output').getBoundingClientRect().width, title_right: t.right - r.left}; }"""


# in the page: the time from a click on "next" to the frame after both views (XZ/YZ and 3-D) show the next event
TIMED_SWITCH = """(key) => new Promise((resolve, reject) => {
    const figs = [...document.querySelectorAll('.js-plotly-plot')].slice(0, 2).filter(gd => gd.offsetParent !== null);
    const button = [...document.querySelectorAll('button')].find(b => b.textContent.includes('next'));
    const done = () => figs.every(gd => { const t = gd.querySelector('.gtitle');
                                          return t !== null && t.textContent.includes(key); });
    const t0 = performance.now();
    const watch = new MutationObserver(() => { if (done()) { watch.disconnect();
        requestAnimationFrame(() => resolve(performance.now() - t0)); } });
    figs.forEach(gd => watch.observe(gd, {subtree: true, childList: true, characterData: true}));
    setTimeout(() => { watch.disconnect(); reject(new Error('no redraw of ' + key + ' within 20 s')); }, 20000);
    button.click(); })"""


TITLE_STARTS = """(prefix) => { const t = document.querySelector('.js-plotly-plot .gtitle');
                                  return t !== null && t.textContent.startsWith(prefix); }"""


def _run_all_and_step(page):
    "Run all cells from the Run menu and wait for the browser's first event to be drawn."
    def run_all():
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.get_by_text("| Idle").first.wait_for(timeout=30_000)          # the kernel is up
    run_all()
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        # JupyterLab sometimes asks for the kernel although the notebook names one: accept its default
        # (python3) and run again, in case the dialog swallowed the first request
        accept = page.locator(".jp-Dialog .jp-mod-accept")
        if accept.count() and accept.first.is_visible():
            accept.first.click(); run_all()
        if page.evaluate(TITLE_STARTS, "event_id 0 "): return
        time.sleep(0.5)
    raise TimeoutError("the event browser did not draw event_id 0 within 45 s")


def test_event_browser_in_jupyterlab(tmp_path):
    "JupyterLab opens a notebook, runs it, the display renders, and 'next' changes the event drawn."
    skip_without_chromium()
    exe = chromium_path()
    import nbformat
    from playwright.sync_api import sync_playwright
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in LAB_NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "display.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    path = [str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path).rstrip(os.pathsep),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    jupyter = Path(sys.executable).with_name("jupyter")
    log = open(tmp_path / "lab.log", "w")
    lab = subprocess.Popen([str(jupyter), "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
                            f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={tmp_path}",
                            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                           cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1); break
            except OSError:
                if lab.poll() is not None: break
                time.sleep(0.2)
        else:
            pytest.fail("JupyterLab did not start in 30 s:\n" + (tmp_path / "lab.log").read_text()[-3000:])
        assert lab.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            # requests that would leave the machine are recorded (page.route would stall the kernel's websocket)
            external = []
            page.on("request", lambda r: None if r.url.startswith((base, "ws://127.0.0.1", "data:", "blob:")) else external.append(r.url))
            page.goto(f"{base}/lab/tree/display.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=30_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=30_000)
            try:
                _run_all_and_step(page)
            except Exception:
                page.screenshot(path=str(tmp_path / "failure.png"))
                raise AssertionError(f"JupyterLab display did not render or react; screenshot {tmp_path / 'failure.png'}\n"
                                     + (tmp_path / "lab.log").read_text()[-2000:])
            n_points = page.evaluate(HITS_DRAWN)
            legend = page.evaluate("() => document.body.innerText")
            n_selected = selection_before = None
            if not TIMING:     # (a timing run on ~1000-hit events: the box selection did not reach the kernel, see README)
                # a box selection over the whole XZ view goes through the widget to Python and back: the hit table
                # lists the x-strip hits and the linked y-strip hits
                box = page.locator(".js-plotly-plot .draglayer .xy .nsewdrag").first.bounding_box()
                page.mouse.move(box["x"] + 2, box["y"] + 2); page.mouse.down()
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] - 3, steps=6)
                page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] - 3, steps=6); page.mouse.up()
                try:
                    page.wait_for_function("() => /\\d+ selected hits/.test(document.body.innerText)", timeout=20_000)
                except Exception:
                    page.screenshot(path=str(tmp_path / "failure.png"))
                    raise AssertionError(f"no hit table after a box selection; screenshot {tmp_path / 'failure.png'}")
                n_selected = int(page.evaluate("() => document.body.innerText.match(/(\\d+) selected hits/)[1]"))
                selection_before = page.evaluate(SELECTION_STATE)
            page.get_by_role("button", name="next ▶").click()
            page.wait_for_function(TITLE_STARTS, arg="event_id 1 ", timeout=20_000)
            page.wait_for_timeout(300)
            selection_after = page.evaluate(SELECTION_STATE)
            n_points_1 = page.evaluate(HITS_DRAWN)
            widths = page.evaluate(WIDTHS)
            switch_ms = [page.evaluate(TIMED_SWITCH, f"event_id {k} ") for k in range(2, 2 + SWITCHES)]
            print(f"end-to-end switch (click -> next event drawn) [ms]: median {np.median(switch_ms[2:]):.0f}, "
                  f"all {[round(t) for t in switch_ms]}")
            if os.environ.get("HEPNB_SWITCH_TIMES"):
                Path(os.environ["HEPNB_SWITCH_TIMES"]).write_text(json.dumps({"hits": os.environ.get("HEPNB_SWITCH_HITS"),
                                                                              "3d": os.environ.get("HEPNB_SWITCH_3D", "1"),
                                                                              "switch_ms": switch_ms}))
            n_3d = page.evaluate("() => document.querySelectorAll('.js-plotly-plot .gl-container canvas, .js-plotly-plot canvas').length")
            browser.close()
    finally:
        lab.terminate()
        try: lab.wait(10)
        except subprocess.TimeoutExpired: lab.kill()
        log.close()
    from hepnb.detectors.atar.sim import simulate
    if TIMING: return
    # a jump clears the box and the dimming of the old event (the box was there before)
    assert selection_before["boxes"] >= 1 and selection_before["selecting"] >= 1
    assert (selection_after["boxes"], selection_after["dimmed"]) == (0, 0), selection_after
    # the views fill the cell's width and the title fits
    assert widths["fig"] >= 0.95 * widths["cell"] and widths["title_right"] <= widths["fig"]
    n_hits = [len(h) for h in simulate(40, seed=5).column("hits_z").to_pylist()[:2]]   # the notebook's first two events
    assert (n_points, n_points_1) == ({"data": n_hits[0], "svg": n_hits[0]}, {"data": n_hits[1], "svg": n_hits[1]})
    assert n_3d >= 1
    assert external == []
    assert "true pion stop" in legend and "trace 0" not in legend
    events = simulate(40, seed=5)
    st0 = np.asarray(events.column("hits_strip_type")[0].as_py())
    assert (st0 == 0).sum() <= n_selected <= len(st0)          # all x-strip hits, plus linked y-strip hits

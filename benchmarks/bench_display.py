"""Python time of an event switch in the ATAR event browser, for events of ~100, ~300 and ~1000 hits,
next to a naive display that rebuilds one plotly trace per hit; prints a Markdown table.

    .venv/bin/python benchmarks/bench_display.py [--switches 40] [--naive-switches 5]

Events of a given size are made by merging consecutive simulated events (with pile-up) until the hit
count is reached; time groups and MC event ids stay distinct. An event switch is `EventBrowser.show`:
reading the event, computing every trace's arrays, and writing them into the existing traces of the
XZ/YZ and 3-D `FigureWidget`s. The widget messages are encoded as a kernel would (JSON for the state,
binary buffers for typed arrays) by a comm stand-in, so their cost is included; sending them over
ZMQ and drawing in the browser are not Python time. The naive display clears the figure and adds one
`Scatter` per hit. Both run in the same process, one core, interleaved by size.
"""
import argparse
import os

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")
import json
import time

import numpy as np
import pyarrow as pa

pa.set_cpu_count(1)

SENT = {"bytes": 0, "messages": 0}


def _install_encoding_comm():
    "Make widget messages cost what a kernel's session pays in Python: JSON of the content, buffers counted."
    import comm.base_comm as bc
    from comm import DummyComm

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        SENT["bytes"] += len(json.dumps(data, default=str, allow_nan=True))
        SENT["bytes"] += sum(memoryview(b).nbytes for b in (buffers or []))
        SENT["messages"] += 1
    DummyComm.publish_msg = publish_msg
    bc.BaseComm.publish_msg = publish_msg


def merged_events(table: pa.Table, target: int, n_events: int) -> pa.Table:
    "`n_events` events of at least `target` hits, each merged from consecutive events of `table`."
    from hepnb.detectors.atar.display import DISPLAY_COLUMNS
    cols = [c for c in DISPLAY_COLUMNS if c in table.column_names and not c.startswith("group_")]
    rows = table.select(cols).to_pylist()
    hit_cols = [c for c in cols if c.startswith("hits_")]
    out, i = [], 0
    while len(out) < n_events:
        ev = {c: (list(rows[i][c]) if c in hit_cols else rows[i][c]) for c in cols}
        ev["event_id"] = len(out)
        while len(ev["hits_z"]) < target:
            i = (i + 1) % len(rows)
            nxt = rows[i]
            g0 = max(ev["hits_time_group"], default=-1) + 1
            m0 = max(ev["hits_mc_event_id"], default=-1) + 1
            for c in hit_cols:
                v = list(nxt[c])
                if c == "hits_time_group": v = [g + g0 for g in v]
                if c == "hits_mc_event_id": v = [m + m0 for m in v]
                ev[c] += v
        out.append(ev); i = (i + 1) % len(rows)
    return pa.Table.from_pylist(out, schema=table.select(cols).schema)


def naive_switch(fig, ev):
    "Rebuild the XZ/YZ figure with one trace per hit (what a display built hit by hit does)."
    import plotly.graph_objects as go
    colors = {1: "#d62728", 2: "#1f77b4", 4: "#2ca02c"}
    fig.data = []
    st, z, u, e = ev["hits_strip_type"], ev["hits_z"], ev["hits_coord"], ev["hits_edep"]
    traces, rows, cols = [], [], []
    for i in range(len(z)):
        traces.append(go.Scatter(x=[z[i]], y=[u[i]], mode="markers", showlegend=False,
                                 marker=dict(color=colors.get(int(ev["hits_particle_mask"][i]), "#7f7f7f"), size=4 + 10 * float(e[i]) ** 0.5),
                                 hovertemplate=f"hit {i}: E {e[i] * 1e3:.1f} keV, t {ev['hits_time'][i]:.2f} ns"))
        rows.append(1); cols.append(int(st[i]) + 1)
    fig.add_traces(traces, rows=rows, cols=cols)
    fig.layout.title.text = f"event {ev['event_id']}"


def stats(ts):
    ts = np.asarray(ts) * 1e3
    return float(np.median(ts)), float(np.percentile(ts, 95))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switches", type=int, default=40, help="event switches timed per size (EventBrowser)")
    ap.add_argument("--naive-switches", type=int, default=5, help="event switches timed per size (naive display)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    _install_encoding_comm()
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    from hepnb.detectors.atar.display import EventBrowser, EventStore, figure_data
    from hepnb.detectors.atar.sim import simulate
    base = simulate(2000, seed=a.seed)          # default pile-up (300 kHz)
    sizes = (100, 300, 1000)
    n_ev = max(a.switches, a.naive_switches) + 1
    results = {}
    for target in sizes:
        store = EventStore(merged_events(base, target, n_ev))
        b = EventBrowser(store)
        for r in range(3): b.show(r)                                   # warm-up
        ts, tf, sent = [], [], []
        for k in range(a.switches):
            SENT["bytes"] = SENT["messages"] = 0
            t0 = time.perf_counter(); b.show((k + 1) % n_ev); ts.append(time.perf_counter() - t0)
            sent.append((SENT["bytes"], SENT["messages"]))
            ev = b.event
            t0 = time.perf_counter(); figure_data(ev, "particle", extent="group"); tf.append(time.perf_counter() - t0)
        fig = go.FigureWidget(make_subplots(rows=1, cols=2))
        tn = []
        for k in range(a.naive_switches):
            ev = store.event((k + 1) % n_ev)
            t0 = time.perf_counter(); naive_switch(fig, ev); tn.append(time.perf_counter() - t0)
        hits = float(np.mean(np.diff(store.offsets)))
        results[target] = dict(hits=hits, switch=stats(ts), data=stats(tf), naive=stats(tn),
                               kb=np.median([s[0] for s in sent]) / 1e3, msgs=np.median([s[1] for s in sent]))
    print(f"ATAR event browser: Python time per event switch (one core, {os.cpu_count()} on the machine); "
          f"{a.switches} switches per size, naive display {a.naive_switches}\n")
    print("| hits/event | switch median [ms] | switch p95 [ms] | of which figure data [ms] | widget messages (kB) "
          "| naive per-hit traces median [ms] | naive / browser |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results.values():
        print(f"| {r['hits']:.0f} | {r['switch'][0]:.1f} | {r['switch'][1]:.1f} | {r['data'][0]:.1f} | "
              f"{r['msgs']:.0f} ({r['kb']:.0f}) | {r['naive'][0]:.0f} | {r['naive'][0] / r['switch'][0]:.0f}× |")


if __name__ == "__main__":
    main()

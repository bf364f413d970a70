"""Python time of an event switch in the XEC event browser (the six faces unrolled, 4760 sensors, truth and the
classical stages overlaid), next to rebuilding the whole figure per event; prints a Markdown table.

    .venv/bin/python benchmarks/bench_xec_display.py [--events 40] [--switches 40]

Simulated signal events (0.5 % dead channels) with the classical position, energy and angle stages and the
neighbour-mean inpainter. An event switch is `EventBrowser.show`: reading the event, computing every trace's
arrays and writing them into the existing traces of the `FigureWidget` (two batched updates). The widget messages
are encoded as a kernel would (JSON for the state, binary buffers for typed arrays) by the comm stand-in of
`bench_display.py`, so their cost is included; sending them and drawing in the browser are not Python time.
"Rebuild" makes a new `FigureWidget` per event (`event_figure`, plotly's validation and the widget's whole state
sent), as a display without in-place updates would. One core.
"""
import argparse
import os

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_display import SENT, _install_encoding_comm, stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=40)
    ap.add_argument("--switches", type=int, default=40)
    ap.add_argument("--rebuilds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    _install_encoding_comm()
    from hepnb.detectors.xec import stages as S
    import plotly.graph_objects as go
    from hepnb.detectors.xec.display import EventBrowser, event_figure, figure_data
    from hepnb.detectors.xec.inpaint import NeighbourMean
    from hepnb.detectors.xec.sim import simulate_dataset
    from hepnb.stage import run_stage
    tmp = Path(tempfile.mkdtemp())
    ds = simulate_dataset(tmp / "events", a.events, seed=a.seed)
    pos = run_stage(S.LocalFit(), ds, tmp / "pos")
    preds = {"xec.position": {"classical": pos.path}}
    for stage, impl in (("xec.energy", S.PhotonSum()), ("xec.angle", S.VertexToPoint())):
        preds[stage] = {"classical": run_stage(impl, ds, tmp / stage, upstream={"xec.position": pos}).path}
    preds["xec.inpaint"] = {"classical": run_stage(NeighbourMean(), ds, tmp / "inpaint").path}
    t0 = time.perf_counter()
    b = EventBrowser(ds.path, preds)
    t_open = time.perf_counter() - t0
    rows = []
    for label, color, fill in (("light, raw", "npho", None), ("time, inpainted", "time", "classical")):
        b.color, b.fill = color, fill
        for r in range(3): b.show(r)                                   # warm-up
        ts, tf, sent = [], [], []
        for k in range(a.switches):
            SENT["bytes"] = SENT["messages"] = 0
            t0 = time.perf_counter()
            b.show((k + 1) % a.events)
            ts.append(time.perf_counter() - t0)
            sent.append((SENT["bytes"], SENT["messages"]))
            t0 = time.perf_counter()
            figure_data(b.event, b.preds, color, fill, live=True)
            tf.append(time.perf_counter() - t0)
        tr = []
        for k in range(a.rebuilds):
            t0 = time.perf_counter()
            fig = event_figure(b.store.event(k % a.events), b.preds, color, fill, live=True)
            go.FigureWidget(fig)._repr_mimebundle_()
            tr.append(time.perf_counter() - t0)
        msgs, kb = np.median([s[1] for s in sent]), np.median([s[0] for s in sent]) / 1e3
        rows.append((label, stats(ts), stats(tf), msgs, kb, stats(tr)))
    print(f"XEC event browser: Python time per event switch (one core, {os.cpu_count()} on the machine); "
          f"{a.events} events, {a.switches} switches per colouring; opening the browser took {t_open:.1f} s\n")
    print("| colour | switch median [ms] | switch p95 [ms] | of which figure data [ms] | widget messages (kB) "
          "| rebuild per event median [ms] | rebuild / switch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, sw, fd, msgs, kb, rb in rows:
        print(f"| {label} | {sw[0]:.1f} | {sw[1]:.1f} | {fd[0]:.1f} | {msgs:.0f} ({kb:.0f}) | {rb[0]:.0f} "
              f"| {rb[0] / sw[0]:.0f}× |")


if __name__ == "__main__":
    main()

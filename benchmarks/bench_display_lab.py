"""End-to-end event switch of the ATAR browser in a real JupyterLab + headless Chromium: the time from a click on
"next" to the frame after the views show the next event (measured in the page), for events merged to ~N hits,
with and without the 3-D view; prints a Markdown table. Runs the JupyterLab test of tests/test_display.py.

    .venv/bin/python benchmarks/bench_display_lab.py [--hits 300 1000] [--repeat 1]

Python time of the same switch: benchmarks/bench_display.py.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run(hits: int, three_d: bool) -> list[float]:
    out = Path(tempfile.mkdtemp()) / "switch.json"
    env = {**os.environ, "HEPNB_SWITCH_HITS": str(hits), "HEPNB_SWITCH_3D": "1" if three_d else "0",
           "HEPNB_SWITCH_TIMES": str(out), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "tests/test_display.py", "-k", "jupyterlab"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0: raise SystemExit(f"the JupyterLab run failed:\n{p.stdout[-3000:]}")
    return json.loads(out.read_text())["switch_ms"][2:]          # the first two switches warm up


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hits", type=int, nargs="+", default=[300, 1000])
    ap.add_argument("--repeat", type=int, default=1, help="JupyterLab runs per configuration (10 switches each)")
    a = ap.parse_args()
    rows = []
    for hits in a.hits:
        for three_d in (True, False):
            ms = np.concatenate([run(hits, three_d) for _ in range(a.repeat)])
            rows.append((hits, three_d, float(np.median(ms)), float(np.percentile(ms, 90)), len(ms)))
    print(f"ATAR event browser in JupyterLab + headless Chromium (software WebGL), {os.cpu_count()} cores; "
          "click -> next event drawn, measured in the page\n")
    print("| hits/event | 3-D view | end-to-end median [ms] | p90 [ms] | switches |")
    print("|---:|:---:|---:|---:|---:|")
    for hits, three_d, med, p90, n in rows:
        print(f"| ~{hits} | {'on' if three_d else 'off'} | {med:.0f} | {p90:.0f} | {n} |")


if __name__ == "__main__":
    main()

"""End-to-end event switch of the XEC browser in a real JupyterLab + headless Chromium: the time from a click on
"next" to the frame after the figure shows the next event (measured in the page), and a hover over the inner face
read back from the page; prints a Markdown row. Python time of the same switch: benchmarks/bench_xec_display.py.

    .venv/bin/python benchmarks/bench_xec_display_lab.py [--switches 12]

The notebook simulates 30 signal events and runs the classical position, energy, angle and neighbour-mean stages.
Chromium runs with --disable-gpu (software rendering), as the JupyterLab test of tests/test_display.py.
"""
import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CELLS = [
    "import tempfile\nfrom pathlib import Path\n"
    "from hepnb.detectors.xec import stages as S\nfrom hepnb.detectors.xec.display import EventBrowser\n"
    "from hepnb.detectors.xec.inpaint import NeighbourMean\nfrom hepnb.detectors.xec.sim import simulate_dataset\n"
    "from hepnb.stage import run_stage\ntmp = Path(tempfile.mkdtemp())\n"
    "ds = simulate_dataset(tmp / 'events', 30, seed=5)\npos = run_stage(S.LocalFit(), ds, tmp / 'pos')\n"
    "preds = {'xec.position': {'classical': pos.path},\n"
    "         'xec.energy': {'classical': run_stage(S.PhotonSum(), ds, tmp / 'e',\n"
    "                                                   upstream={'xec.position': pos}).path},\n"
    "         'xec.inpaint': {'classical': run_stage(NeighbourMean(), ds, tmp / 'inp').path}}",
    "browser = EventBrowser(ds.path, preds)\nbrowser",
]
# in the page: the time from a click on "next" to the frame after the figure's title names another event
TIMED_SWITCH = """(before) => new Promise((resolve, reject) => {
    const gd = document.querySelector('.js-plotly-plot');
    const button = [...document.querySelectorAll('button')].find(b => b.textContent.includes('next'));
    const t0 = performance.now();
    const watch = new MutationObserver(() => { const t = gd.querySelector('.gtitle');
        if (t && !t.textContent.startsWith(before + ' ')) { watch.disconnect();
            requestAnimationFrame(() => resolve(performance.now() - t0)); } });
    watch.observe(gd, {subtree: true, childList: true, characterData: true});
    setTimeout(() => { watch.disconnect(); reject(new Error('no redraw within 20 s')); }, 20000);
    button.click(); })"""
TITLE = "() => { const t = document.querySelector('.js-plotly-plot .gtitle'); return t ? t.textContent : ''; }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switches", type=int, default=12)
    a = ap.parse_args()
    import nbformat
    from playwright.sync_api import sync_playwright
    tmp = Path(tempfile.mkdtemp())
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp / "display.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
    log = open(tmp / "lab.log", "w")
    lab = subprocess.Popen([str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser", "--ip", "127.0.0.1",
                            "--port", str(port), f"--IdentityProvider.token={token}", "--allow-root",
                            f"--ServerApp.root_dir={tmp}",
                            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                           cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                        args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(f"{base}/lab/tree/display.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            page.get_by_text("| Idle").first.wait_for(timeout=30_000)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not page.evaluate(TITLE).startswith("event_id"):
                accept = page.locator(".jp-Dialog .jp-mod-accept")
                if accept.count() and accept.first.is_visible(): accept.first.click()
                if not page.evaluate(TITLE):
                    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                    time.sleep(20)
                time.sleep(0.5)
            first = page.evaluate(TITLE)
            if not first.startswith("event_id"): raise SystemExit(f"the browser did not draw; log {tmp / 'lab.log'}")
            times, titles = [], []
            for k in range(a.switches):
                before = page.evaluate(TITLE).split(" · ")[0]
                t = page.evaluate(TIMED_SWITCH, before)
                times.append(t)
                titles.append(page.evaluate(TITLE).split(" · ")[0])
            box = page.locator(".js-plotly-plot .draglayer .xy .nsewdrag").first.bounding_box()
            hover = None
            for fy in (0.55, 0.6, 0.65, 0.7):
                page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * fy)
                page.wait_for_timeout(400)
                texts = [e.text_content() for e in page.query_selector_all(".hovertext")]
                if texts:
                    hover = texts[0]
                    break
            page.screenshot(path=str(tmp / "lab.png"))
            browser.close()
    finally:
        lab.terminate()
        try: lab.wait(10)
        except subprocess.TimeoutExpired: lab.kill()
        log.close()
    assert len(set(titles)) == len(titles), titles          # every click drew another event
    t = np.asarray(times[2:])
    print(f"XEC browser in JupyterLab (headless Chromium, software rendering, {os.cpu_count()} cores shared): "
          f"{len(t)} warm switches; first event {first.split(' · ')[0]}; hover over the inner face: {hover!r}; "
          f"screenshot {tmp / 'lab.png'}\n")
    print("| end-to-end switch median [ms] | p90 [ms] | min [ms] |\n|---:|---:|---:|")
    print(f"| {np.median(t):.0f} | {np.percentile(t, 90):.0f} | {t.min():.0f} |")


if __name__ == "__main__":
    main()

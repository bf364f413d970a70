"""The exploration notebook executes into an HTML report that reads like a physics note (HTML tables, no
reprs), links one plotly.js beside it, and renders offline in a real browser, also from a copied folder."""
import re
import shutil

import pytest

from conftest import ROOT, offline_page, run_cli

REPRS = ("shape: (", "VBox(", "HBox(", "<pre>{'", "dtype:")


LOG_NOISE = ("without encryption", "KeyboardInterrupt caught", "Passed unknown parameter", "ERROR")


@pytest.fixture(scope="module")
def report(tmp_path_factory, small_atar):
    out = tmp_path_factory.mktemp("report")
    p = run_cli("report", ROOT / "nbs/stages/explore_atar.ipynb", "--out", out, "-p", "dataset", small_atar.path,
                "-p", "n_event_views", "2", check=0)
    assert not [n for n in LOG_NOISE if n in p.stderr], p.stderr        # a run that went well says so quietly
    return out / "index.html"


def test_unknown_parameter_is_refused(tmp_path, small_atar):
    "A misspelt parameter would be ignored by papermill; hepnb refuses it and lists what the notebook declares."
    p = run_cli("report", ROOT / "nbs/stages/explore_atar.ipynb", "--out", tmp_path, "-p", "datset", small_atar.path)
    assert p.returncode == 2 and "unknown parameter(s) datset" in p.stderr and "declares: dataset," in p.stderr
    assert not list(tmp_path.iterdir())


def test_report_is_light_and_self_contained(report):
    from hepnb.report import plotly_js_name
    html = report.read_text()
    assert not re.search(r'<(script|link)[^>]*(src|href)="https?://', html)   # nothing fetched from a CDN
    assert f'<script src="{plotly_js_name()}"></script>' in html and (report.parent / plotly_js_name()).is_file()
    assert "plotly.js v" not in html                    # the bundle is beside the page, not in it
    assert html.count("Plotly.newPlot") >= 10           # the distributions and event views
    assert len(html) < 1_500_000, len(html)             # was 8.4 MB with plotly.js and BokehJS inlined
    assert not [r for r in REPRS if r in html]
    assert "Truth per event" in html and "<th style" in html and "±" in html          # HTML tables with errors


def test_report_renders_offline_in_chromium_from_a_copied_folder(report, tmp_path):
    copy = tmp_path / "copied"
    shutil.copytree(report.parent, copy)
    with offline_page(copy / report.name) as (page, external, errors):
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 10", timeout=30_000)
        # plots are not blank: every plotly figure drew data traces
        drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .map(d => d.querySelectorAll('.scatterlayer .trace, .barlayer .trace, .heatmaplayer .hm, .scatterlayer .points path')
            .length)""")
        ticks = page.evaluate("() => [...document.querySelectorAll('.ytick text')].map(t => t.textContent)")
        text = page.inner_text("body")
    assert external == [] and errors == []
    assert len(drawn) >= 10 and min(drawn) > 0
    assert not [t for t in ticks if re.search(r"\d[µmk]$", t)]      # powers of ten, not SI prefixes such as 100µ
    assert not [r for r in (*REPRS, "{'") if r in text]                # no raw dict, even in a table cell


def test_notebooks_started_together_in_one_folder(tmp_path):
    "Kernels talk over their own IPC sockets: several runs started at once in one folder do not cross (as campaigns do)."
    import subprocess, sys
    code = ("import sys, nbformat\nfrom pathlib import Path\nfrom hepnb.report import run_notebook\n"
            "d = Path(sys.argv[1]); d.mkdir()\nnb = nbformat.v4.new_notebook()\n"
            "nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'python3', 'language': 'python'}\n"
            "p = nbformat.v4.new_code_cell('x = 1'); p.metadata['tags'] = ['parameters']\n"
            "nb.cells = [p, nbformat.v4.new_code_cell('print(x * 7)')]\nnbformat.write(nb, d / 'k.ipynb')\n"
            "run_notebook(d / 'k.ipynb', d / 'out', {'x': int(sys.argv[2])})\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"run{i}"), str(i)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "Invalid Signature" not in err and "ERROR" not in err, err[-2000:]
        assert f"{7 * i}" in (tmp_path / f"run{i}" / "out" / "k.ipynb").read_text()
    assert not [f for f in tmp_path.iterdir() if f.name.startswith("kernel")]        # no socket files left here

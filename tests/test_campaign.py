"""Campaigns: spec checks, the local executor (failures, timeouts, dead kernels, a dead controller, reruns),
the index (escaped, offline in Chromium), the Optuna search mode, and the CLI."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import HEPNB, ROOT, offline_page, run_cli, skip_without_chromium
from hepnb import campaign as C
from hepnb.core import HepnbError

TOY = '''
from pathlib import Path
import os, time
from hepnb.campaign import record_metrics
if mode == "fail" and not Path(flag).exists(): raise ValueError(f"refused {label}")
if mode == "sleep": time.sleep(seconds)
if mode == "die": os.kill(os.getpid(), 9)
record_metrics(run_dir, loss=(x - 3.0) ** 2, x=x)
if mode == "eval":       # an evaluating run: its ML-vs-classical table, as the evaluate notebook writes it
    from hepnb.campaign import record_summary
    record_summary(run_dir, [{"stage": "toy.energy", "implementation": impl, "metric": "sigma68", "value": v,
                              "error": 0.01, "better": "lower", "unit": "MeV"}
                             for impl, v in (("ml", 0.5 * x), ("classical", 1.0))])
'''


def toy_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    p = nbformat.v4.new_code_cell("x = 1.0\nmode = 'ok'\nflag = ''\nlabel = ''\nseconds = 0\nrun_dir = ''")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(TOY)]
    path = folder / "toy.ipynb"
    nbformat.write(nb, path)
    return path


def write_spec(folder: Path, body: str) -> Path:
    toy_notebook(folder)
    spec = folder / "spec.yaml"
    spec.write_text(body)
    return spec


@pytest.fixture
def env(tmp_path, monkeypatch):
    "Runs and reports go under tmp_path (through the settings' environment variables, as a user would)."
    monkeypatch.setenv("HEPNB_PATHS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("HEPNB_PATHS_REPORTS", str(tmp_path / "reports"))
    return tmp_path


def statuses(root):
    return {r["run"]: r["status"] for r in C.campaign_status(root)}


SCAN = """campaign: scan
parameters: {{flag: '{tmp}/fixed', label: '<script>alert(1)</script>'}}
stages:
  - name: a
    notebook: toy.ipynb
    zip: {{x: [1.0, 2.0, 4.0], mode: [ok, fail, ok]}}
    run_name: "a-{{x}}"
  - name: b
    notebook: toy.ipynb
    after: [a]
    parameters: {{x: 3.0, label: "{{runs}}/a-1.0"}}
"""


def test_local_campaign_failure_rerun_and_index(env):
    spec = write_spec(env, SCAN.format(tmp=env))
    p = run_cli("campaign", "run", spec, env={k: os.environ[k] for k in ("HEPNB_PATHS_RUNS", "HEPNB_PATHS_REPORTS")})
    assert p.returncode == 1, p.stderr          # a failed run makes the command fail, after the others ran
    root = env / "runs" / "scan"
    assert statuses(root) == {"a-1.0": "succeeded", "a-2.0": "failed", "a-4.0": "succeeded", "b": "blocked"}
    m = C.read_manifest(root / "a-2.0")
    assert m["error"].startswith("ValueError: refused <script>") and "raise ValueError" in m["cell"]["source"]
    assert m["attempts"] == 1 and m["host"] and m["start"] <= m["end"]
    assert (root / "a-2.0" / "report.html").is_file() and (root / "a-2.0" / "toy.ipynb").is_file()
    ok = C.read_manifest(root / "a-4.0")
    assert ok["metrics"] == {"loss": 1.0, "x": 4.0} and ok["parameters"]["run_dir"] == str(root / "a-4.0")
    assert "blocked" in p.stdout and "a-2.0" in C.read_manifest(root / "b")["error"]
    # the chained path reached the downstream notebook
    assert json.loads((root / "b" / "run.json").read_text())["parameters"]["label"] == f"{root}/a-1.0"
    index = (env / "reports" / "scan" / "index.html").read_text()
    assert "<script>alert(1)" not in index and "&lt;script&gt;alert(1)" in index
    assert index.count("Plotly.newPlot") >= 1 and 'href="runs/a-2.0.html"' in index

    started = {r: C.read_manifest(root / r)["start"] for r in ("a-1.0", "a-4.0")}
    (env / "fixed").touch()
    p = run_cli("campaign", "rerun", root, env={k: os.environ[k] for k in ("HEPNB_PATHS_RUNS", "HEPNB_PATHS_REPORTS")})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 of 4 run(s) to execute" in p.stdout
    assert set(statuses(root).values()) == {"succeeded"}
    assert {r: C.read_manifest(root / r)["start"] for r in started} == started    # succeeded runs were not redone
    assert C.read_manifest(root / "b")["metrics"]["loss"] == 0.0


def test_timeout_and_dead_kernel_are_classified(env):
    spec = write_spec(env, """campaign: bad
stages:
  - {name: s, notebook: toy.ipynb, timeout: 15, points: [{mode: sleep, seconds: 120}, {mode: die}, {mode: ok}],
     run_name: "s-{mode}"}
""")
    t0 = time.monotonic()
    c = C.run_campaign(spec, show=False)
    assert time.monotonic() - t0 < 60
    assert statuses(c.root) == {"s-sleep": "timeout", "s-die": "killed", "s-ok": "succeeded"}
    assert "timeout of 15 s" in C.read_manifest(c.root / "s-sleep")["error"]
    assert "kernel died" in C.read_manifest(c.root / "s-die")["error"]
    assert (c.root / "s-sleep" / "report.html").is_file()      # partial report of the stopped run
    ps = subprocess.run(["pgrep", "-f", str(c.root / "s-sleep")], capture_output=True, text=True)
    assert ps.stdout.strip() == ""                              # the worker and its kernel are gone


def test_retries(env):
    spec = write_spec(env, "campaign: r\nretries: 2\nstages: [{name: s, notebook: toy.ipynb, parameters: {mode: fail, label: x, flag: /nonexistent/flag}}]\n")
    c = C.run_campaign(spec, show=False)
    m = C.read_manifest(c.root / "s")
    assert m["status"] == "failed" and m["attempts"] == 3


def test_campaign_survives_its_controller(env):
    "The controlling process is killed mid-campaign; running the campaign again finishes it without redoing runs."
    spec = write_spec(env, """campaign: ctl
max_parallel: 1
stages:
  - {name: s, notebook: toy.ipynb, grid: {x: [1.0, 2.0, 3.0]}, parameters: {mode: sleep, seconds: 3}, run_name: "s-{x}"}
""")
    ctl = subprocess.Popen([HEPNB, "campaign", "run", str(spec)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    root = env / "runs" / "ctl"
    deadline = time.monotonic() + 60
    while C.read_manifest(root / "s-1.0").get("status") != "running":
        assert time.monotonic() < deadline and ctl.poll() is None
        time.sleep(0.2)
    ctl.send_signal(signal.SIGKILL); ctl.wait()
    orphan = C.read_manifest(root / "s-1.0")
    p = run_cli("campaign", "run", spec, env={k: os.environ[k] for k in ("HEPNB_PATHS_RUNS", "HEPNB_PATHS_REPORTS")})
    assert p.returncode == 0, p.stdout + p.stderr
    assert set(statuses(root).values()) == {"succeeded"}
    m = C.read_manifest(root / "s-1.0")
    assert m["start"] == orphan["start"] and m["pid"] == orphan["pid"]   # the orphaned worker finished its run


def test_spec_errors_through_the_cli(env):
    spec = write_spec(env, "campaign: c\nstages: [{name: a, notebook: toy.ipynb, grid: {x: 3}}]\n")
    p = run_cli("campaign", "run", spec)
    assert p.returncode == 2 and "stages[0].grid.x" in p.stderr and "expected a non-empty list" in p.stderr
    assert "Traceback" not in p.stderr
    p = run_cli("campaign", "status", env / "nowhere")
    assert p.returncode == 2 and "campaign spec not found" in p.stderr


def test_parameters_the_notebook_does_not_declare(env):
    "A stage's own parameter must be the notebook's (a typo is refused at load); a shared one goes where declared."
    spec = write_spec(env, "campaign: c\nparameters: {seed: 1}\nstages: [{name: a, notebook: toy.ipynb, "
                           "parameters: {x: 2.0, lbel: oops}}]\n")
    with pytest.raises(HepnbError, match=r"stages\[0\]\.parameters.*unknown parameter\(s\) lbel for toy.ipynb"):
        C.load_campaign(spec)
    spec.write_text("campaign: c\nparameters: {seed: 1}\nstages: [{name: a, notebook: toy.ipynb, parameters: {x: 2.0}}]\n")
    c = C.load_campaign(spec)
    assert "seed" not in c.runs[0].parameters and c.runs[0].parameters["x"] == 2.0


def test_optuna_search(env):
    spec = write_spec(env, """campaign: tune
stages:
  - name: t
    notebook: toy.ipynb
    search: {metric: loss, direction: minimize, n_trials: 6, parallel: 2, seed: 1, space: {x: {float: [0.0, 6.0]}}}
""")
    c = C.run_campaign(spec, show=False)
    rows = C.campaign_status(c.root)
    assert [r["run"] for r in rows] == [f"t-t{i:03d}" for i in range(6)]
    assert all(r["status"] == "succeeded" for r in rows)
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    study = optuna.load_study(study_name="tune:t", storage=JournalStorage(JournalFileBackend(str(c.root / "optuna-t.journal"))))
    assert len(study.trials) == 6 and study.best_value == min(r["metrics"]["loss"] for r in rows)
    # the same campaign again: the study is complete, nothing reruns
    C.run_campaign(spec, show=False)
    assert len(C.campaign_status(c.root)) == 6
    # another search under the same campaign folder is refused, not silently mixed in
    spec.write_text(spec.read_text().replace("n_trials: 6", "n_trials: 7"))
    with pytest.raises(HepnbError, match="different search"):
        C.run_campaign(spec, show=False)


def test_index_answers_how_it_went_and_relocates(env, tmp_path_factory):
    "Headline tables read from the runs, scans only along the parameter that varies, light pages, relocatable folders."
    skip_without_chromium()
    spec = write_spec(env, "campaign: plots\nstages: [{name: s, notebook: toy.ipynb, "
                           "grid: {x: [1.0, 4.0], mode: [ok, eval]}, run_name: 's-{mode}-{x}'}]\n")
    c = C.run_campaign(spec, show=False)
    state = json.loads((c.root / "campaign.json").read_text())
    assert not os.path.isabs(state["reports"]) and not os.path.isabs(state["spec"])
    index = c.reports / "index.html"
    assert max(p.stat().st_size for p in c.reports.rglob("*.html")) < 1_500_000
    copy = tmp_path_factory.mktemp("elsewhere") / "shared-plots"     # the reports folder, sent to a colleague
    shutil.copytree(c.reports, copy)
    with offline_page(copy / "index.html") as (page, external, errors):
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", timeout=30_000)
        titles = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .gtitle')].map(t => t.textContent)")
        lines = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .map(d => d.querySelectorAll('.scatterlayer .trace').length)""")
        text = page.inner_text("body")
        better = page.locator("td:has-text('★')").all_inner_texts()
        shot = page.screenshot(full_page=True)               # kept for review by eye where TEST_SCREENSHOTS points
        if os.environ.get("TEST_SCREENSHOTS"):
            Path(os.environ["TEST_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
            (Path(os.environ["TEST_SCREENSHOTS"]) / "campaign-index.png").write_bytes(shot)
        page.click("a[href='runs/s-eval-4.0.html']")          # the run's own report opens from the copy, offline too
        page.wait_for_url("**/runs/s-eval-4.0.html")
        run_page = page.url
    assert external == [] and errors == [] and len(shot) > 20_000
    assert text.index("How it went") < text.index("Scans") < text.index("Runs")
    assert "sigma68" in text and "MeV" in text and "0.500 ± 0.010" in text and "1.000 ± 0.010" in text
    assert better == ["0.500 ± 0.010 ★", "1.000 ± 0.010 ★"]    # x = 1: ML (0.5) better; x = 4: classical (1 < 2)
    assert sorted(titles) == ["s: energy.classical.sigma68 vs x", "s: energy.ml.sigma68 vs x", "s: loss vs x"]
    assert lines[titles.index("s: loss vs x")] == 2     # one line per mode: along a line the runs differ only in x
    assert not [r for r in ("VBox(", "shape: (", "{'", "vs mode") if r in text]
    assert run_page.startswith(copy.as_uri()) and run_page.endswith("runs/s-eval-4.0.html")

    # a copied campaign folder writes its own index, never into the original's reports
    before = index.read_text()
    moved = tmp_path_factory.mktemp("moved") / "plots-copy"
    shutil.copytree(c.root, moved)
    p = run_cli("campaign", "report", moved)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (moved / "reports" / "index.html").is_file() and index.read_text() == before


def wait_for(cond, timeout=120, poll=0.5, what="condition"):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(poll)


def test_slurm_campaign_array_failure_and_rerun(slurm, env):
    "A job array on a real SLURM cluster: one run fails on purpose, the dependent stage is blocked; rerun fixes both."
    spec = write_spec(env, SCAN.format(tmp=env).replace("campaign: scan", "campaign: scan\nexecutor: slurm\nresources: {cpus: 1, mem: 100M}"))
    p = run_cli("campaign", "submit", spec)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "submitted job array(s)" in p.stdout
    root = env / "runs" / "scan"
    wait_for(lambda: not any(r["status"] in C.ACTIVE for r in C.campaign_status(root)), what="the job arrays")
    assert statuses(root) == {"a-1.0": "succeeded", "a-2.0": "failed", "a-4.0": "succeeded", "b": "blocked"}
    ms = {r: C.read_manifest(root / r) for r in ("a-1.0", "a-2.0", "a-4.0", "b")}
    array = ms["a-1.0"]["job_id"].split("_")[0]
    assert [ms[r]["job_id"] for r in ("a-1.0", "a-2.0", "a-4.0")] == [f"{array}_{i}" for i in range(3)]
    assert ms["b"]["job_id"].split("_")[0] != array
    assert "refused" in ms["a-2.0"]["error"] and (root / "a-2.0" / "report.html").is_file()
    assert ms["a-4.0"]["metrics"]["loss"] == 1.0
    log = Path(ms["a-2.0"]["log"]).read_text()
    assert f"job {array}_1" in log and "a-2.0" in log                # the SLURM log of the array task is kept
    states = slurm.wait_job(array, timeout=10)
    assert states[1] == ("FAILED", "1:0") and states[0] == ("COMPLETED", "0:0")   # the worker's exit code reaches SLURM

    (env / "fixed").touch()
    p = run_cli("campaign", "rerun", root)
    assert p.returncode == 0, p.stdout + p.stderr
    assert set(statuses(root).values()) == {"succeeded"}
    assert C.read_manifest(root / "a-1.0")["job_id"] == f"{array}_0"           # not resubmitted
    assert C.read_manifest(root / "a-2.0")["job_id"].split("_")[0] not in (array,)
    assert (env / "reports" / "scan" / "index.html").is_file()


def test_slurm_cancel(slurm, env):
    spec = write_spec(env, """campaign: long
executor: slurm
resources: {cpus: 1, mem: 100M}
stages: [{name: s, notebook: toy.ipynb, parameters: {mode: sleep, seconds: 300}}]
""")
    assert run_cli("campaign", "submit", spec).returncode == 0
    root = env / "runs" / "long"
    wait_for(lambda: C.read_manifest(root / "s").get("status") == "running", what="the run to start")
    p = run_cli("campaign", "cancel", root)
    assert p.returncode == 0 and "cancelled 1 run(s)" in p.stdout
    job = C.read_manifest(root / "s")["job_id"].split("_")[0]
    states = slurm.wait_job(job, timeout=30)
    assert states[0][0] == "CANCELLED"
    assert statuses(root) == {"s": "cancelled"}

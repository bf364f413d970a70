"""Proof of the platform: a detector defined outside hepnb (tests/plugin_detector: a toy calorimeter with a
fixed-size sensor level and a hit graph) registers through the `hepnb.detectors` entry point and runs simulate ->
train -> predict -> evaluate from the CLI -> display (its browser on `hepnb.display.Browser`), a stage notebook through papermill, and pretrain -> fine-tune with
init_from and a frozen backbone, with no change to any generic file of hepnb."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

PLUGIN = ROOT / "tests" / "plugin_detector"
ENV = {"PYTHONPATH": os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}


def cli(*args, cwd, check=0):
    return run_cli(*args, cwd=cwd, env=ENV, check=check)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("toycal")
    cli("simulate", "toycal", "--events", 3000, "--seed", 1, "--out", d / "ds", cwd=d)
    return d


def test_the_plugin_is_listed_with_its_levels(data):
    out = cli("detectors", cwd=data).stdout
    assert "toycal  toy calorimeter" in out and "toycal.events" in out and "presets: high, low" in out
    assert "toycal.energy            energy           yes" in out
    from hepnb.dataset import open_dataset
    ds = open_dataset(data / "ds")
    t = ds.read(["npho", "edge_src"])
    import pyarrow as pa
    assert t.schema.field("npho").type.equals(pa.list_(pa.float32(), 16)) and ds.num_rows == 3000
    assert "checksums: ok" in cli("validate", data / "ds", cwd=data).stdout      # levels and edge indices checked


def test_simulate_train_predict_evaluate_from_the_cli(data):
    d = data
    cli("train", "toycal", "energy", "--dataset", d / "ds", "--run-dir", d / "ml", "--epochs", 3, "--lr", 3e-3,
        "--batch-size", 64, "--num-workers", 0, cwd=d)
    cli("predict", "toycal", "toycal.energy", "--run-dir", d / "ml", "--dataset", d / "ds", "--out", d / "p_ml", cwd=d)
    cli("predict", "toycal", "toycal.energy", "--classical", "--dataset", d / "ds", "--out", d / "p_cl", cwd=d)
    cli("evaluate", "toycal", "--dataset", d / "ds", d / "p_ml", d / "p_cl", "--out", d / "rows.json", cwd=d)
    rows = {r["implementation"]: r for r in json.loads((d / "rows.json").read_text())}
    # Poisson statistics of 40 photons/GeV over 1-10 GeV: a few % to 15 % for the photon sum; the model must be close
    assert 0.02 < rows["classical"]["value"] < 0.2 and rows["classical"]["error"] > 0
    assert rows["ml"]["value"] < 1.5 * rows["classical"]["value"], rows
    # ... and display: the plugin's browser on the generic navigation, worst ML event first
    code = f"""
import sys
from hepnb.registry import get_detector
b = get_detector("toycal").load("display").EventBrowser({str(d / "ds")!r}, {{"ml": {str(d / "p_ml")!r}}}, order_by="rel_error:ml")
worst = b.table["rel_error:ml"].max()
assert abs(b.table["rel_error:ml"][b.row] - worst) < 1e-12, (b.row, worst)
first = b.row
b.w_next.click()
assert b.row != first and b.w_pos.value == 2 and "event" in b.fig.layout.title.text and len(b.fig.data[0].y) == 16
b.w_key.value = 10**9
assert "not in the dataset" in b.w_status.value
print("browser ok", len(b.rows))
"""
    import subprocess, sys
    p = subprocess.run([sys.executable, "-c", code], cwd=d, env={**os.environ, **ENV}, capture_output=True, text=True)
    assert p.returncode == 0 and "browser ok 3000" in p.stdout, p.stderr


def test_a_stage_notebook_through_papermill(data):
    nb = PLUGIN / "stage_toycal.ipynb"
    cli("report", nb, "--out", data / "report", "-p", "run_dir", str(data / "report"), "-p", "events", 300, cwd=data)
    metrics = json.loads((data / "report" / "metrics.json").read_text())
    assert 0.02 < metrics["energy_sigma68"] < 0.3
    assert "energy resolution" in (data / "report" / "index.html").read_text()


def test_pretrain_then_fine_tune_with_a_frozen_backbone(data):
    d = data
    cli("train", "toycal", "pretrain", "--dataset", d / "ds", "--run-dir", d / "pre", "--epochs", 2, "--num-workers", 0, cwd=d)
    p = run_cli("train", "toycal", "energy", "--dataset", d / "ds", "--run-dir", d / "tune0", "--epochs", 1,
                "--init-from", d / "pre", cwd=d, env=ENV)
    assert p.returncode == 2 and "head." in p.stderr and "decoder." in p.stderr      # never a silent partial load
    cli("train", "toycal", "energy", "--dataset", d / "ds", "--run-dir", d / "tune", "--epochs", 2, "--num-workers", 0,
        "--init-from", d / "pre", "--init-allow-missing", "head.*", "--init-ignore-unexpected", "decoder.*",
        "--freeze", "backbone.*", cwd=d)
    import torch
    pre = torch.load(d / "pre" / "checkpoints" / "last.pt", weights_only=True)["model"]
    tuned = torch.load(d / "tune" / "checkpoints" / "last.pt", weights_only=True)
    backbone = [k for k in pre if k.startswith("backbone.")]
    assert backbone and all(torch.equal(pre[k], tuned["model"][k]) for k in backbone)     # frozen: unchanged
    assert not torch.equal(tuned["model"]["head.weight"], torch.zeros_like(tuned["model"]["head.weight"]))
    record = json.dumps(tuned.get("resolved", {}))
    assert str(d / "pre") in record or "init_from" in record


def test_geometry_verb_writes_a_plugin_sensor_table_and_refuses_a_detector_without_one(tmp_path):
    "`hepnb geometry` takes its choices from the registry: a detector's `geometry` part, or a one-line refusal."
    import csv
    cli("geometry", "toycal", "--out", tmp_path / "g.csv", cwd=tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "g.csv")))
    assert list(rows[0]) == ["sensor_id", "face", "x", "y", "z", "dx", "dy", "dz"] and len(rows) == 16
    assert [float(r["x"]) for r in rows] == list(range(16))
    assert cli("geometry", "toycal", "--out", tmp_path / "g.csv", cwd=tmp_path, check=2).stderr.count("\n") == 1
    err = cli("geometry", "atar", "--out", tmp_path / "a.csv", cwd=tmp_path, check=2).stderr
    assert err == ("hepnb: error: detector atar: this detector provides no geometry "
                   "(no `geometry` part in its Detector)\n")
    err = cli("geometry", "nosuch", "--out", tmp_path / "n.csv", cwd=tmp_path, check=2).stderr
    assert "invalid choice: 'nosuch'" in err
    assert not (tmp_path / "a.csv").exists()

"""The `hepnb` command: help everywhere, reproducible simulation, clear errors with exit status 2."""
import json
import re

import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from hepnb.dataset import open_dataset

SUBCOMMANDS = [["simulate"], ["simulate", "atar"], ["ingest"], ["convert"], ["validate"], ["report"], ["settings"],
               ["detectors"], ["evaluate"], ["lab"]]


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=" ".join)
def test_help_on_every_subcommand(cmd):
    p = run_cli(*cmd, "--help", check=0)
    assert p.stdout.startswith("usage: hepnb")


def test_same_seed_gives_identical_files(tmp_path):
    for name in ("a", "b"):
        run_cli("simulate", "atar", "--events", 1500, "--seed", 4, "--out", tmp_path / name, "--rows-per-file", 600, check=0)
    run_cli("simulate", "atar", "--events", 1500, "--seed", 4, "--out", tmp_path / "c", "--rows-per-file", 1500, check=0)
    run_cli("simulate", "atar", "--events", 1500, "--seed", 5, "--out", tmp_path / "d", check=0)
    a, b, c, d = (open_dataset(tmp_path / n, verify=True) for n in "abcd")
    assert [f["sha256"] for f in a.manifest["files"]] == [f["sha256"] for f in b.manifest["files"]]
    assert [f["rows"] for f in a.manifest["files"]] == [600, 600, 300]
    assert a.read().equals(c.read())           # file layout does not change the events
    assert not a.read().equals(d.read())
    m = a.manifest
    assert m["schema"] == {"name": "atar.events", "version": 1} and m["detector"] == "atar" and m["seed"] == 4
    assert m["producer"]["parameters"]["pileup_rate"] == 0.3 and m["producer"]["parameters"]["n_events"] == 1500


def test_simulation_options_reach_the_physics(tmp_path):
    run_cli("simulate", "atar", "--events", 2000, "--out", tmp_path / "p", "--preset", "physical",
            "--pileup-rate", 0, "--n-planes", 40, check=0)
    t = open_dataset(tmp_path / "p").read(["decay_mode", "n_pileup", "hits_plane"])
    assert t["decay_mode"].to_numpy().sum() <= 2      # physical mix: 1.2e-4 pi->e nu
    assert t["n_pileup"].to_numpy().max() == 0
    assert max(max(x) for x in t["hits_plane"].to_pylist() if x) <= 39


@pytest.mark.parametrize("args,needle", [
    (["simulate", "atar", "--events", "abc", "--out", "x"], "--events"),
    (["simulate", "atar", "--events", "-3", "--out", "x"], "--events"),
    (["simulate", "atar", "--events", "10", "--out", "x", "--pienu-fraction", "2"], "pienu_fraction"),
    (["simulate", "atar", "--events", "10", "--out", "x", "--strip-pitch", "0"], "strip_pitch"),
    (["simulate", "atar", "--events", "10"], "--out"),
    (["report", "no/such/notebook.ipynb", "--out", "r"], "no/such/notebook.ipynb"),
])
def test_bad_cli_values(tmp_path, args, needle):
    p = run_cli(*args, cwd=tmp_path)
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()


def test_existing_output_is_not_overwritten(tmp_path):
    run_cli("simulate", "atar", "--events", 100, "--out", tmp_path / "d", check=0)
    before = (tmp_path / "d" / "manifest.json").read_text()
    p = run_cli("simulate", "atar", "--events", 50, "--out", tmp_path / "d")
    assert p.returncode == 2 and "already exists" in p.stderr
    assert (tmp_path / "d" / "manifest.json").read_text() == before
    run_cli("simulate", "atar", "--events", 50, "--out", tmp_path / "d", "--overwrite", check=0)
    assert open_dataset(tmp_path / "d").num_rows == 50


@pytest.mark.parametrize("ini,needle", [
    ("[compute]\nnum_wrkers = 4\n", "[compute] num_wrkers"),
    ("[compute]\nnum_workers = many\n", "[compute] num_workers"),
    ("[slurm]\nmem = lots\n", "[slurm] mem"),
    ("[compute]\nprecision = fp16\n", "must be one of auto, fp32, bf16"),   # the engine has no fp16 (no grad scaler)
    ("[gpu]\nx = 1\n", "unknown section [gpu]"),
    ("not an ini file", "not a valid INI file"),
])
def test_bad_settings_refused_by_every_command(tmp_path, ini, needle):
    (tmp_path / "settings.ini").write_text(ini)
    for cmd in (["settings"], ["simulate", "atar", "--events", "5", "--out", "x"], ["validate", "x"]):
        p = run_cli(*cmd, cwd=tmp_path)
        assert p.returncode == 2, p.stderr
        assert str(tmp_path / "settings.ini") in p.stderr and needle in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()


def test_settings_precedence(tmp_path):
    (tmp_path / "settings.ini").write_text("[compute]\ndevice = cpu\n[slurm]\npartition = short\n")
    out = run_cli("settings", cwd=tmp_path, check=0).stdout
    assert "device = cpu" in out and "partition = short" in out and "mem = 8G" in out
    out = run_cli("settings", cwd=tmp_path, env={"HEPNB_COMPUTE_DEVICE": "cuda:1"}, check=0).stdout
    assert "device = cuda:1" in out
    p = run_cli("settings", cwd=tmp_path, env={"HEPNB_COMPUTE_DEVICE": "gpu"})
    assert p.returncode == 2 and "HEPNB_COMPUTE_DEVICE" in p.stderr
    other = tmp_path / "other.ini"
    other.write_text("[slurm]\npartition = long\n")
    out = run_cli("settings", cwd=tmp_path, env={"HEPNB_SETTINGS": str(other)}, check=0).stdout
    assert "partition = long" in out and str(other) in out


def test_convert_ingest_validate_round_trip_through_the_cli(tmp_path, small_atar):
    root = tmp_path / "atar.root"
    run_cli("convert", small_atar.path, "--to", "root", root, check=0)
    assert "rows" in run_cli("validate", root, check=0).stdout
    run_cli("ingest", root, "--out", tmp_path / "back", check=0)
    back = open_dataset(tmp_path / "back", verify=True)
    assert back.read().equals(small_atar.read()) and back.manifest["schema"]["name"] == "atar.events"
    out = run_cli("validate", tmp_path / "back", check=0).stdout
    assert "3000" in out
    pq.write_table(small_atar.read().slice(0, 10), tmp_path / "one.parquet")
    assert run_cli("validate", tmp_path / "one.parquet", check=0).returncode == 0


def test_validate_names_the_damage(tmp_path, small_atar):
    import shutil
    d = tmp_path / "d"
    shutil.copytree(small_atar.path, d)
    (d / "part-00001.parquet").write_bytes(b"PAR1 truncated")
    p = run_cli("validate", d)
    assert p.returncode == 2 and "part-00001.parquet" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "x.root").write_bytes(b"root" + b"\0" * 100)
    p = run_cli("validate", tmp_path / "x.root")
    assert p.returncode == 2 and "x.root" in p.stderr and "Traceback" not in p.stderr


def test_train_then_predict_ml_and_classical(tmp_path):
    ds = tmp_path / "ds"
    run_cli("simulate", "atar", "--events", 800, "--seed", 3, "--out", ds, "--rows-per-file", 400, check=0)
    p = run_cli("train", "atar", "event", "--dataset", ds, "--run-dir", tmp_path / "run", "--epochs", 1,
                "--d-model", 16, "--n-heads", 2, "--n-layers", 1, "--batch-size", 32, "--device", "cpu",
                "--num-workers", 0, check=0)
    assert "val/loss=" in p.stdout
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file() and (tmp_path / "run" / "metrics.parquet").is_file()
    run_cli("predict", "atar", "atar.event_classifier", "--dataset", ds, "--out", tmp_path / "ml", "--run-dir",
            tmp_path / "run", check=0)
    ml = open_dataset(tmp_path / "ml")
    assert ml.manifest["producer"]["kind"] == "ml" and ml.num_rows == 800
    # the classical event classifier needs the pion stop: refused without it, fine with it
    p = run_cli("predict", "atar", "atar.event_classifier", "--dataset", ds, "--out", tmp_path / "c", "--classical")
    assert p.returncode == 2 and "needs the predictions of stage atar.pion_stop" in p.stderr
    p = run_cli("predict", "atar", "atar.pion_stop", "--dataset", ds, "--out", tmp_path / "ml2", "--run-dir", tmp_path / "run")
    assert p.returncode == 2 and "holds a model for stage atar.event_classifier" in p.stderr
    run_cli("predict", "atar", "atar.pion_stop", "--dataset", ds, "--out", tmp_path / "ps", "--classical", "--use-truth", check=0)
    run_cli("predict", "atar", "atar.event_classifier", "--dataset", ds, "--out", tmp_path / "c", "--classical",
            "--upstream", f"atar.pion_stop={tmp_path / 'ps'}", check=0)
    assert open_dataset(tmp_path / "ps").manifest["producer"]["truth_inputs"] == ["atar.group_classifier"]


def test_predict_then_evaluate_through_the_registry(tmp_path, small_atar):
    "predict (streamed in small batches) then evaluate: rows per metric with errors; a base dataset is not predictions."
    g, p = tmp_path / "groups", tmp_path / "stops"
    run_cli("predict", "atar", "atar.group_classifier", "--classical", "--dataset", small_atar.path, "--out", g, check=0)
    run_cli("predict", "atar", "atar.pion_stop", "--classical", "--dataset", small_atar.path, "--out", p,
            "--upstream", f"atar.group_classifier={g}", "--batch-size", 170, check=0)
    out = run_cli("evaluate", "atar", "--dataset", small_atar.path, g, p, "--out", tmp_path / "rows.json", check=0).stdout
    rows = json.loads((tmp_path / "rows.json").read_text())
    stop = next(r for r in rows if r["stage"] == "atar.pion_stop" and r["metric"] == "error3d_68")
    assert stop["implementation"] == "classical" and 0.05 < stop["value"] < 0.2 and stop["error"] > 0 and stop["n"] == 3000
    assert "atar.pion_stop" in out and "±" in out and re.search(r"error3d_68 +[0-9.]+ ± [0-9.]+ mm", out)
    p2 = run_cli("evaluate", "atar", "--dataset", small_atar.path, small_atar.path, cwd=tmp_path)
    assert p2.returncode == 2 and "expected a prediction dataset" in p2.stderr and len(p2.stderr.strip().splitlines()) == 1


def test_physics_options_show_their_units():
    "--help takes each option's unit from the comment beside its config field."
    out = run_cli("simulate", "atar", "--help", check=0).stdout
    flat = " ".join(out.split())
    assert "--beam-momentum FLOAT MeV/c (default: 55.0)" in flat
    assert "--time-resolution FLOAT ns (default: 0.2)" in flat
    assert "physical: pienu_fraction=0.0001235" in flat and "{'" not in flat

"""The XEC pack through the CLI: simulate -> pretrain (mae) -> fine-tune from it -> predict ML and classical ->
evaluate side by side; the inpainter as a stage; a pretrained encoder with another input normalisation is refused."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from hepnb.dataset import open_dataset

TINY = ["--width", "32", "--cnn-dims", "8,16", "--cnn-depths", "1,1", "--hex-dim", "16", "--hex-depth", "1",
        "--fusion-heads", "2", "--fusion-ff", "64", "--head-hidden", "32", "--decoder-width", "16",
        "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--precision", "fp32", "--no-echo"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xec")
    run_cli("simulate", "xec", "--preset", "uniform15to60", "--events", "160", "--seed", "1", "--out", tmp / "train",
            check=0, env={"OMP_NUM_THREADS": "1"})
    run_cli("simulate", "xec", "--events", "64", "--seed", "2", "--first-run", "900", "--out", tmp / "test", check=0,
            env={"OMP_NUM_THREADS": "1"})
    return tmp


def test_pretrain_finetune_predict_evaluate(data):
    env = {"OMP_NUM_THREADS": "1"}
    run_cli("train", "xec", "mae", "--dataset", data / "train", "--run-dir", data / "mae", *TINY, check=0, env=env)
    out = run_cli("train", "xec", "energy", "--dataset", data / "train", "--run-dir", data / "energy", *TINY,
                  "--init-from", data / "mae", check=0, env=env)
    assert "val/energy_res68=" in out.stdout
    info = json.loads((data / "energy" / "model.json").read_text())
    assert info["task"] == "energy" and info["train"]["init_prefix_map"] == {"encoder.": ""}
    assert info["resolved"]["init_from"]["sha256"]          # the source checkpoint's hash is in the run's record
    run_cli("predict", "xec", "xec.energy", "--dataset", data / "test", "--run-dir", data / "energy",
            "--out", data / "e-ml", check=0, env=env)
    run_cli("predict", "xec", "xec.position", "--dataset", data / "test", "--classical", "--out", data / "p-cl",
            check=0, env=env)
    run_cli("predict", "xec", "xec.energy", "--dataset", data / "test", "--classical", "--upstream",
            f"xec.position={data / 'p-cl'}", "--out", data / "e-cl", check=0, env=env)
    run_cli("evaluate", "xec", "--dataset", data / "test", data / "e-ml", data / "e-cl", data / "p-cl",
            "--out", data / "summary.json", check=0, env=env)
    rows = json.loads((data / "summary.json").read_text())
    got = {(r["stage"], r["implementation"], r["metric"]) for r in rows}
    for impl in ("ml", "classical"):
        assert ("xec.energy", impl, "energy_sigma68_rel") in got and ("xec.energy", impl, "energy_abs68_rel") in got
    assert ("xec.position", "classical", "uvw_dist_68pct") in got
    e = next(r for r in rows if r["metric"] == "energy_sigma68_rel" and r["implementation"] == "classical")
    assert 0 < e["value"] < 0.2 and e["error"] > 0


def test_other_normalisation_is_refused(data):
    if not (data / "mae" / "model.json").exists():
        run_cli("train", "xec", "mae", "--dataset", data / "train", "--run-dir", data / "mae", *TINY, check=0)
    p = run_cli("train", "xec", "position", "--dataset", data / "train", "--run-dir", data / "pos500", *TINY,
                "--npho-scale", "500", "--init-from", data / "mae", env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 2 and "normalised its inputs" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_inpainter_as_a_stage(data):
    env = {"OMP_NUM_THREADS": "1"}
    if not (data / "mae" / "model.json").exists():
        run_cli("train", "xec", "mae", "--dataset", data / "train", "--run-dir", data / "mae", *TINY, check=0, env=env)
    # from the pretrained encoder (as the quickstart does): the inpainter's decoder starts afresh
    run_cli("train", "xec", "inpaint", "--dataset", data / "train", "--run-dir", data / "inpaint", *TINY,
            "--mask-ratio", "0.05", "--init-from", data / "mae", check=0, env=env)
    info = json.loads((data / "inpaint" / "model.json").read_text())
    assert info["train"]["init_ignore_unexpected"] == ["decoder.*"] and info["train"]["init_allow_missing"] == ["decoder.*"]
    for how in (["--run-dir", data / "inpaint"], ["--classical"]):
        out = data / f"inp-{how[0][2:]}"
        run_cli("predict", "xec", "xec.inpaint", "--dataset", data / "test", *how, "--out", out, check=0, env=env)
        t = pq.read_table(open_dataset(out).files[0])
        filled = t.column("npho_inpainted").combine_chunks().flatten().to_numpy()
        assert filled.shape == (64 * 4760,) and np.isfinite(filled).all() and (filled < 1e9).all()


def test_classical_options_from_the_command_line(data):
    "`--set` gives a classical implementation its options (a calibration file here); wrong names and values are refused."
    import dataclasses
    from hepnb.detectors.xec import stages as S
    env = {"OMP_NUM_THREADS": "1"}
    cal = S.calibrate(open_dataset(data / "train").read())
    cal.save(data / "cal.json")
    run_cli("predict", "xec", "xec.position", "--dataset", data / "test", "--classical", "--set",
            f"calibration={data / 'cal.json'}", "--set", "half=4", "--out", data / "p-set", check=0, env=env)
    recorded = open_dataset(data / "p-set").manifest["producer"]["parameters"]
    assert recorded["half"] == 4
    assert recorded["calibration"] == json.loads(json.dumps(dataclasses.asdict(cal)))
    assert recorded["calibration"] != json.loads(json.dumps(dataclasses.asdict(S.DEFAULT)))
    for opt, want in (("nope=1", "has no option 'nope'"), ("half=four", "expected int for half"),
                      ("half", "expected NAME=VALUE")):
        p = run_cli("predict", "xec", "xec.position", "--dataset", data / "test", "--classical", "--set", opt,
                    "--out", data / "p-bad", env=env)
        assert p.returncode == 2 and want in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr

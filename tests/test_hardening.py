"""Reliability under misuse (issue 11): no code or shell injection from campaign specs and settings, killed
processes leave nothing behind, concurrent writers are refused, and every misuse ends in one line and exit 2.
(ROOT ingest of real files is covered by test_ingest_testdata.py.)"""
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest
import yaml

from conftest import HEPNB, ROOT, run_cli
from hepnb.campaign import Campaign, Resources, Run, _sbatch_script, load_campaign
from hepnb.core import HepnbError
from hepnb.dataset import DatasetWriter, open_dataset
from hepnb.settings import load_settings

NOTEBOOK = ROOT / "nbs" / "stages" / "simulate_atar.ipynb"


def one_line_refusal(p, *needles):
    "Exit 2, one line on stderr naming what it should, no traceback."
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, f"exit {p.returncode}: {p.stderr}"
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name or p.name.endswith(".lock"))


# ---- 2. injection through campaign specs and settings ----

def write_spec(tmp_path, body: dict):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"campaign": "c", "stages": [{"name": "s", "notebook": str(NOTEBOOK), **body}]}))
    return spec


@pytest.mark.parametrize("body,needle", [
    ({"parameters": {"x = 1\nimport os; os.system('touch PWNED')\ny": 1}}, "must be a Python identifier"),
    ({"grid": {"n; __import__('os').system('touch PWNED')": [1, 2]}}, "must be a Python identifier"),
    ({"points": [{"class": 1}]}, "not a keyword"),
    ({"parameters": {"day": "2026-12-02"}, "grid": {"when": [yaml.safe_load("2026-12-02")]}}, "expected plain data"),
    ({"resources": {"partition": "short\n#SBATCH --wrap=touch PWNED"}}, "partition"),
    ({"resources": {"account": "a; touch PWNED"}}, "account"),
    ({"resources": {"time": "25:99:99"}}, "out of range"),
])
def test_campaign_spec_injection_refused(tmp_path, body, needle):
    spec = write_spec(tmp_path, body)
    with pytest.raises(HepnbError, match=needle.replace("(", r"\(")):
        load_campaign(spec, runs_dir=tmp_path / "runs", reports_dir=tmp_path / "reports")
    p = run_cli("campaign", "run", spec, cwd=tmp_path, env={"HEPNB_PATHS_RUNS": str(tmp_path / "runs")})
    one_line_refusal(p, str(spec))
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "runs").exists()


def test_parameters_reach_the_notebook_as_data_not_code(tmp_path):
    "A value that looks like code arrives as the string it is (papermill writes repr(value))."
    import nbformat
    from hepnb.report import run_notebook
    v4 = nbformat.v4
    nb = tmp_path / "echo.ipynb"
    nbformat.write(v4.new_notebook(cells=[v4.new_code_cell("text = ''\nout = ''", metadata={"tags": ["parameters"]}),
                                          v4.new_code_cell("open(out, 'w').write(text)")]), nb)
    evil = "'); open('PWNED', 'w').write('x'); print('"
    run_notebook(nb, tmp_path / "out", {"text": evil, "out": str(tmp_path / "seen.txt")})
    assert (tmp_path / "seen.txt").read_text() == evil
    assert not (ROOT / "PWNED").exists() and not (tmp_path / "PWNED").exists()
    p = run_cli("report", nb, "--out", tmp_path / "r", "-p", "text; import os", "1", cwd=tmp_path)
    one_line_refusal(p, "must be a Python identifier")


@pytest.mark.parametrize("ini,needle", [
    ("[slurm]\npartition = short\n  touch PWNED\n", "[slurm] partition"),      # a continuation line
    ("[slurm]\naccount = $(touch PWNED)\n", "[slurm] account"),
    ("[slurm]\ntime = 25:99:99\n", "out of range"),
])
def test_settings_injection_and_range_refused(tmp_path, ini, needle):
    (tmp_path / "settings.ini").write_text(ini)
    with pytest.raises(HepnbError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_settings(tmp_path / "settings.ini")
    one_line_refusal(run_cli("settings", cwd=tmp_path), str(tmp_path / "settings.ini"), needle)


def test_sbatch_script_has_one_line_per_option(tmp_path):
    "A valid spec's values land on their own #SBATCH lines; a control character anywhere is refused."
    res = Resources(cpus=2, mem="4G", time="1-00:30:00", partition="gpu,short", account="hep-ml")
    run = Run("r", "s", str(NOTEBOOK), {}, resources=res)
    c = Campaign("c", "slurm", [run], {"s": {"after": []}}, NOTEBOOK, "", tmp_path / "runs", tmp_path / "reports")
    lines = _sbatch_script(c, "s", [run], tmp_path / "logs").splitlines()
    assert "#SBATCH --partition=gpu,short" in lines and "#SBATCH --account=hep-ml" in lines
    assert "#SBATCH --time=1-00:30:00" in lines and "#SBATCH --signal=B:USR1@120" in lines
    bad = Run("r", "s", str(NOTEBOOK), {}, resources=Resources(partition="x\ntouch PWNED"))
    with pytest.raises(HepnbError, match="control character"):
        _sbatch_script(c, "s", [bad], tmp_path / "logs")


# ---- 3. numeric options: range and finiteness ----

@pytest.mark.parametrize("args,needle", [
    (["simulate", "atar", "--events", "10", "--rows-per-file", "0", "--out", "x"], "--rows-per-file"),
    (["simulate", "atar", "--events", "10", "--pileup-rate", "inf", "--out", "x"], "--pileup-rate"),
    (["simulate", "atar", "--events", "10", "--window-end", "inf", "--out", "x"], "--window-end"),
    (["simulate", "atar", "--events", "10", "--beam-momentum", "inf", "--out", "x"], "--beam-momentum"),
    (["simulate", "atar", "--events", "10", "--beam-momentum", "150", "--out", "x"], "beyond the target"),
    (["simulate", "atar", "--events", "10", "--time-resolution", "nan", "--out", "x"], "--time-resolution"),
    (["simulat", "atar"], "invalid choice"),
])
def test_bad_numbers_refused_in_one_line(tmp_path, args, needle):
    t0 = time.monotonic()
    one_line_refusal(run_cli(*args, cwd=tmp_path), needle)
    assert time.monotonic() - t0 < 60 and not any(tmp_path.iterdir())   # nothing written


def test_writer_refuses_zero_rows_per_file(tmp_path):
    for key in ("rows_per_file", "row_group_size"):
        with pytest.raises(HepnbError, match=f"--{key.replace('_', '-')}"):
            DatasetWriter(tmp_path / "d", **{key: 0})


@pytest.mark.slow
def test_training_misuse_refused(tmp_path, small_atar):
    for args, needle in ((["--n-heads", "3"], "multiple of n_heads"), (["--d-model", "0"], "--d-model"),
                         (["--batch-size", "0"], "--batch-size")):
        p = run_cli("train", "atar", "event", "--dataset", small_atar.path, "--run-dir", tmp_path / "r", *args, cwd=tmp_path)
        one_line_refusal(p, needle)
        assert not (tmp_path / "r" / "checkpoints").exists()
    # a finished run folder: a new training without --resume is refused and leaves its files alone; so is a
    # second training while one holds the folder
    run_cli("train", "atar", "event", "--dataset", small_atar.path, "--run-dir", tmp_path / "done", "--epochs", "1",
            "--num-workers", "0", check=0)
    before = (tmp_path / "done" / "model.json").read_text()
    p = run_cli("train", "atar", "event", "--dataset", small_atar.path, "--run-dir", tmp_path / "done",
                "--d-model", "32", cwd=tmp_path)
    one_line_refusal(p, "already has a checkpoint", "--resume")
    assert (tmp_path / "done" / "model.json").read_text() == before
    from hepnb.core import output_lock
    with output_lock(tmp_path / "busy"):
        p = run_cli("train", "atar", "event", "--dataset", small_atar.path, "--run-dir", tmp_path / "busy", cwd=tmp_path)
    one_line_refusal(p, "another writer (pid")
    run_cli("simulate", "atar", "--events", "0", "--out", tmp_path / "empty", check=0)
    p = run_cli("train", "atar", "event", "--dataset", tmp_path / "empty", "--run-dir", tmp_path / "r0",
                "--num-workers", "0", cwd=tmp_path)
    one_line_refusal(p, "no batches")
    assert not (tmp_path / "r0" / "checkpoints" / "last.pt").exists()     # nothing for `predict` to pick up


def test_corrupt_shard_refused_by_train_and_predict(tmp_path, small_atar):
    import shutil
    ds = tmp_path / "ds"
    shutil.copytree(small_atar.path, ds)
    shard = open_dataset(ds).files[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF                      # one flipped byte in a data page: the footer still reads
    shard.write_bytes(bytes(data))
    p = run_cli("train", "atar", "event", "--dataset", ds, "--run-dir", tmp_path / "r", "--num-workers", "0", cwd=tmp_path)
    one_line_refusal(p, str(shard), "checksum")
    p = run_cli("predict", "atar", "atar.pion_stop", "--classical", "--dataset", ds, "--out", tmp_path / "p", cwd=tmp_path)
    one_line_refusal(p, str(shard), "checksum")


# ---- 9. settings and misuse messages ----

def test_settings_file_and_environment_misuse(tmp_path):
    (tmp_path / "settings.ini").write_bytes(b"[compute]\ndevice = cpu\n# caf\xe9 in Latin-1\n")
    one_line_refusal(run_cli("settings", cwd=tmp_path), "expected UTF-8", str(tmp_path / "settings.ini"))
    (tmp_path / "settings.ini").write_text("[compute]\ndevice = cpu\n")
    p = run_cli("settings", cwd=tmp_path, env={"HEPNB_COMPUT_DEVICE": "cuda"})     # a typo must not do nothing
    one_line_refusal(p, "HEPNB_COMPUT_DEVICE", "unknown hepnb variable")


def test_report_on_a_yaml_file(tmp_path):
    spec = tmp_path / "campaign.yaml"
    spec.write_text("campaign: x\n")
    one_line_refusal(run_cli("report", spec, "--out", tmp_path / "r", cwd=tmp_path), "expected a Jupyter notebook (.ipynb)")
    broken = tmp_path / "broken.yaml"
    broken.write_text("campaign: x\nstages:\n  - name: a\n   notebook: b\n")
    one_line_refusal(run_cli("campaign", "run", broken, cwd=tmp_path), "not valid YAML: line 4, column 4")


# ---- 4-6. killed processes and concurrent writers ----

def start_simulation(out, events=400_000):
    "A simulation that runs long enough to be signalled (its own process group, so no stray child survives a test)."
    # default dispositions: under `nohup` SIGHUP arrives ignored, and hepnb rightly leaves an ignored signal ignored
    def defaults(): [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGHUP)]
    return subprocess.Popen([HEPNB, "simulate", "atar", "--events", str(events), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=defaults)


def wait_for_temporary(folder, name, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if any(p.name.startswith(f".{name}.tmp-") and any(p.iterdir()) for p in folder.iterdir()):
            return
        time.sleep(0.1)
    raise AssertionError(f"no temporary folder of {name} appeared within {timeout} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signalled_writer_leaves_no_temporary(tmp_path, sig):
    p = start_simulation(tmp_path / "d")
    try:
        wait_for_temporary(tmp_path, "d")
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 128 + sig and f"terminated by {signal.Signals(sig).name}" in err, err
    assert list(tmp_path.iterdir()) == []


def test_second_writer_refused_and_killed_writer_cleaned_up(tmp_path):
    first = start_simulation(tmp_path / "d")
    try:
        wait_for_temporary(tmp_path, "d")
        second = run_cli("simulate", "atar", "--events", 10, "--out", tmp_path / "d", "--overwrite", cwd=tmp_path)
        one_line_refusal(second, str(tmp_path / "d"), f"another writer (pid {first.pid} on {socket.gethostname()})")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None: os.killpg(first.pid, signal.SIGKILL)
    left = temporaries(tmp_path)
    assert any(n.startswith(".d.tmp-") for n in left), left           # SIGKILL cannot be caught ...
    run_cli("simulate", "atar", "--events", 10, "--out", tmp_path / "d", check=0)
    assert temporaries(tmp_path) == [] and open_dataset(tmp_path / "d").num_rows == 10   # ... the next writer cleans up


@pytest.mark.slow
def test_sigkilled_training_leaves_no_process(tmp_path, small_atar):
    "kill -9 of `hepnb train` with loader workers: the forkserver, its workers and the resource tracker all go."
    p = subprocess.Popen([HEPNB, "train", "atar", "event", "--dataset", str(small_atar.path), "--run-dir",
                          str(tmp_path / "r"), "--num-workers", "2", "--epochs", "100", "--batch-size", "16"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    me, seen = psutil.Process(p.pid), {}            # pid -> (process, name) of every descendant seen
    def workers(): return sum(name == "pt_data_worker" for _, name in seen.values())
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and workers() < 2:
        for k in me.children(recursive=True):
            try: seen[k.pid] = (seen.get(k.pid, (k,))[0], psutil.Process(k.pid).name())   # workers rename themselves
            except psutil.NoSuchProcess: pass
        time.sleep(0.1)
    assert workers() >= 2, seen
    time.sleep(1)                                   # workers busy filling their queues
    p.kill(); p.wait()
    t0 = time.monotonic()
    alive = [k for k, _ in seen.values()]
    while alive and time.monotonic() - t0 < 10:
        alive = [k for k in alive if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    for k in alive: k.kill()
    assert not alive, [(k.pid, k.name()) for k in alive]


# ---- 7. make lab: a token, never on the command line ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(port, token=None):
    "HTTP status of the server's /api/status (None while nothing listens)."
    url = f"http://127.0.0.1:{port}/api/status" + (f"?token={token}" if token else "")
    try:
        return urllib.request.urlopen(url, timeout=2).status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def test_lab_token_from_a_file_not_the_command_line(tmp_path):
    token_file = tmp_path / "cfg" / "lab-token"
    env = {**os.environ, "HEPNB_LAB_TOKEN_FILE": str(token_file), "HEPNB_LAB_TOKEN": "", "JUPYTER_TOKEN": ""}
    port = free_port()
    lab = subprocess.Popen([HEPNB, "lab", "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.monotonic()
        while status(port) is None and time.monotonic() - t0 < 60 and lab.poll() is None:
            time.sleep(0.5)
        token = token_file.read_text().strip()
        assert len(token) >= 32 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert status(port) == 403 and status(port, token) == 200
        cmdline = " ".join(psutil.Process(lab.pid).cmdline())
        assert "jupyter-lab" in cmdline and token not in cmdline
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(30)
    token_file.chmod(0o644)                       # a token others can read is refused ...
    one_line_refusal(run_cli("lab", "--port", port, env=env), "chmod 600")
    token_file.write_text("")                     # ... and so is no token at all
    token_file.chmod(0o600)
    one_line_refusal(run_cli("lab", "--port", port, env=env), "does not start without authentication")

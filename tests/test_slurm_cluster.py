"The local SLURM test cluster (tests/slurm_cluster.py) behaves like a real one: arrays, dependencies, scancel, env."
import os
import subprocess
import sys
import time

import pytest

from slurm_cluster import LocalSlurm, _alive, job_states


def wait_running(s, job_id, timeout=20):
    deadline = time.monotonic() + timeout
    while (st := job_states(job_id, s.env())[job_id][0]) != "RUNNING":
        assert st == "PENDING" and time.monotonic() < deadline, f"job {job_id}: {st}"
        time.sleep(0.05)


def test_array_exit_codes_and_dependency(slurm, tmp_path):
    # task 1 fails with exit 3; each task leaves a marker file when it ends
    arr = slurm.sbatch("--array=0-2", "-J", "arr", f"--chdir={tmp_path}", "-o", "%A_%a.out",
                       "--wrap", "sleep 0.3; touch done.$SLURM_ARRAY_TASK_ID; [ $SLURM_ARRAY_TASK_ID != 1 ] || exit 3")
    # submitted at once, they wait for the array: afterany runs once all tasks have ended, afterok never runs
    after = slurm.sbatch(f"--dependency=afterany:{arr}", f"--chdir={tmp_path}", "-o", "after.out",
                         "--wrap", "ls done.* | wc -l; test -f done.0 -a -f done.1 -a -f done.2")
    never = slurm.sbatch(f"--dependency=afterok:{arr}", f"--chdir={tmp_path}", "--wrap", "true")
    assert slurm.wait_job(arr) == {0: ("COMPLETED", "0:0"), 1: ("FAILED", "3:0"), 2: ("COMPLETED", "0:0")}
    assert slurm.wait_job(after) == {after: ("COMPLETED", "0:0")}
    assert (tmp_path / "after.out").read_text().split() == ["3"]
    deadline = time.monotonic() + 10  # the dependency is re-evaluated by the next scheduling pass
    while "Reason=DependencyNeverSatisfied" not in (line := slurm.run("scontrol", "show", "job", "-o", never).stdout):
        assert "JobState=PENDING" in line and time.monotonic() < deadline, line
        time.sleep(0.1)
    assert "JobState=PENDING" in line
    slurm.run("scancel", never)
    assert slurm.wait_job(never)[never][0] == "CANCELLED"


def test_scancel_kills_a_running_job(slurm, tmp_path):
    job = slurm.sbatch(f"--chdir={tmp_path}", "-o", "job.out", "--wrap", "sleep 300 & echo $! > pid; wait")
    wait_running(slurm, job)
    deadline = time.monotonic() + 10
    while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = int((tmp_path / "pid").read_text())
    assert _alive(pid)
    slurm.run("scancel", job)
    state, code = slurm.wait_job(job)[job]
    assert state == "CANCELLED", (state, code)
    deadline = time.monotonic() + 10
    while _alive(pid):  # the job's whole process tree goes
        assert time.monotonic() < deadline, f"process {pid} of cancelled job {job} still alive"
        time.sleep(0.05)
    assert "CANCELLED" in (tmp_path / "job.out").read_text()


def test_job_inherits_the_submitters_environment(slurm, tmp_path):
    venv_bin = os.path.dirname(sys.executable)  # PATH too: `python3` in the job is the submitter's venv python
    job = slurm.sbatch(f"--chdir={tmp_path}", "-o", "env.out", "--wrap",
                       'echo "$HEPNB_SLURM_PROBE|$SLURM_CONF|$PWD"; command -v python3',
                       env=slurm.env(HEPNB_SLURM_PROBE="hello from the submitter",
                                     PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}"))
    assert slurm.wait_job(job) == {job: ("COMPLETED", "0:0")}
    assert (tmp_path / "env.out").read_text().splitlines() == [
        f"hello from the submitter|{slurm.conf}|{tmp_path}", os.path.join(venv_bin, "python3")]


def test_restart_and_stale_daemons(slurm, tmp_path):
    # a "crashed run": a process starts a cluster, gets a job running and dies without stop()
    crashed = subprocess.run(
        [sys.executable, "-c", f"""
import os, sys, time
sys.path.insert(0, {os.path.dirname(__file__)!r})
from slurm_cluster import LocalSlurm, job_states
s = LocalSlurm().start({str(tmp_path / 'crashed')!r})
pid = {str(tmp_path / 'pid')!r}
j = s.sbatch('--wrap', f'sleep 300 & echo $! > {{pid}}; wait', '-o', '/dev/null')
while job_states(j)[j][0] != 'RUNNING' or not (os.path.exists(pid) and os.path.getsize(pid)):
    time.sleep(0.05)
print(*(p.pid for p in s.procs.values()), flush=True)
os._exit(0)
"""], capture_output=True, text=True, timeout=60)
    assert crashed.returncode == 0, crashed.stderr
    leftovers = [int(p) for p in crashed.stdout.split()] + [int((tmp_path / "pid").read_text())]
    assert len(leftovers) == 3 and all(map(_alive, leftovers))

    other = LocalSlurm()
    try:
        other.start(tmp_path / "again")
        names = {n for _, n, _ in other.stale_killed}
        assert {"slurmctld", "slurmd", "slurmstepd"} <= names, other.stale_killed
        assert not any(map(_alive, leftovers))  # the daemons and the job's processes
        assert os.environ["SLURM_CONF"] == str(other.conf)
        # the session's cluster is not a leftover: untouched
        assert slurm.procs["slurmctld"].poll() is None and slurm.procs["slurmd"].poll() is None
        pids = [p.pid for p in other.procs.values()]
        other.stop()
        assert not any(map(_alive, pids))
        assert os.environ["SLURM_CONF"] == str(slurm.conf)
        # a second start of the same object in the same folder: a fresh cluster (state wiped, ids from 1 again)
        other.start(tmp_path / "again")
        job = other.sbatch("--wrap", "exit 7", "-o", "/dev/null")
        assert job == 2  # 1 was the readiness probe
        assert other.wait_job(job) == {job: ("FAILED", "7:0")}
    finally:
        other.stop()
    assert os.environ["SLURM_CONF"] == str(slurm.conf)
    job = slurm.sbatch("--wrap", "true", "-o", "/dev/null")
    assert slurm.wait_job(job) == {job: ("COMPLETED", "0:0")}


@pytest.mark.parametrize("ci", ["true", ""])
def test_fixture_skips_or_fails_without_slurm(tmp_path, ci):
    # a pytest run whose PATH has no Slurm binaries: skipped locally, an error on CI
    (tmp_path / "test_x.py").write_text("def test_x(slurm):\n    pass\n")
    here = os.path.dirname(__file__)
    env = {**os.environ, "PATH": "/nonexistent", "CI": ci, "PYTHONPATH": here}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "conftest", "-p", "no:cacheprovider",
                        "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_x.py")],
                       env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert "SLURM not installed" in out and "apt-get install slurmctld slurmd slurm-client munge" in out, out
    assert (("1 error" in out and r.returncode != 0) if ci else ("1 skipped" in out and r.returncode == 0)), out

"""A real single-node SLURM cluster on localhost, for tests.

`LocalSlurm().start(workdir)` writes `workdir/slurm.conf`, points `SLURM_CONF` (in `os.environ`) at it,
starts munged (if no working one), slurmctld and slurmd, and returns once a probe job (`srun true`)
has run. `stop()` cancels every job and terminates the daemons by PID. Each start wipes the state in
`workdir`, so job ids start again at 1. The daemons listen on free ports picked at start, so the
cluster can run next to another one (or a system Slurm) on the same machine; nothing under /etc/slurm
is written. Needs root (slurmd runs jobs as the submitting user) and the Debian packages
`slurmctld slurmd slurm-client munge`. See /work/shared/slurm-local.md for why each setting is there.

No pytest in here: `tests/conftest.py` wraps it in the `slurm` fixture.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = "apt-get install slurmctld slurmd slurm-client munge"
MARKER = "# hepnb test cluster (tests/slurm_cluster.py)"
DAEMONS = ("slurmctld", "slurmd")
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
                 "SIGNALING", "STAGE_OUT", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "STOPPED"}


def _which(name):
    return shutil.which(name) or next((p for d in ("/usr/sbin", "/sbin", "/usr/local/sbin")
                                       if os.access(p := os.path.join(d, name), os.X_OK)), None)


def available():
    "(True, '') when a local cluster can be started here, else (False, reason)."
    missing = [b for b in ("slurmctld", "slurmd", "munged", "munge", "sbatch", "srun", "scontrol", "scancel")
               if not _which(b)]
    if missing:
        return False, f"SLURM not installed (missing {', '.join(missing)}): {INSTALL_HINT}"
    if os.geteuid() != 0:
        return False, "a local SLURM cluster needs root (slurmd runs jobs as the submitting user)"
    return True, ""


def _free_ports(n):
    "`n` distinct free TCP ports on this machine (all bound at once, then released)."
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("", 0))
        return tuple(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def _tail(path, n=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"({e})"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        for p in left:  # reap our own children
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _kill(pids, timeout=10):
    "SIGTERM, wait up to `timeout` s, then SIGKILL; returns when they are gone."
    for sig, t in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        if not (pids := _wait_gone(pids, t)):
            return
    raise RuntimeError(f"processes {pids} survived SIGKILL")


def _processes():
    "{pid: (ppid, name, conf or None)} of every process; conf from `-f CONF` or SLURM_CONF in its environment."
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (d / "cmdline").read_bytes().split(b"\0") if a]
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        name = os.path.basename(argv[0]).split(":")[0] if argv else ""  # "slurmstepd: [2.batch]"
        conf = argv[argv.index("-f") + 1] if name in DAEMONS and "-f" in argv[:-1] else None
        if conf is None and name in (*DAEMONS, "slurmstepd"):
            try:
                env = (d / "environ").read_bytes().split(b"\0")
                conf = next((e[11:].decode() for e in env if e.startswith(b"SLURM_CONF=")), None)
            except OSError:
                pass
        out[int(d.name)] = (ppid, name, conf)
    return out


def _owner(conf):
    "The PID that started the test cluster of `conf` (from our marker line); 0 if gone or not ours."
    try:
        m = re.search(rf"^{re.escape(MARKER)} owner=(\d+)", Path(conf).read_text(errors="replace"), re.M)
    except OSError:
        return 0
    return int(m.group(1)) if m else 0


_LIVE = set()  # confs of the clusters this process has started and not stopped


def kill_stale(conf=None):
    """Kill what earlier test clusters left behind (a crashed or killed run): slurmctld, slurmd and slurmstepd
    processes (with their jobs' processes) of a conf that carries our marker and whose owner process is gone,
    or of a temporary conf that no longer exists, or of `conf` itself (the one about to be written).
    Daemons of other clusters (a system Slurm, a live test session elsewhere) are left alone; a live
    cluster of another process on `conf` itself is an error. Returns [(pid, name, conf)] killed."""
    procs, me = _processes(), os.getpid()
    target = os.path.realpath(conf) if conf else None
    tmp = os.path.realpath(tempfile.gettempdir()) + os.sep
    stale, verdict = [], {}
    for pid, (ppid, name, c) in procs.items():
        if name not in (*DAEMONS, "slurmstepd") or not c or pid == me:
            continue
        rc = os.path.realpath(c)
        if rc not in verdict:
            owner = _owner(rc)
            if rc in _LIVE:
                if rc == target:
                    raise RuntimeError(f"a cluster on {conf} is already running in this process")
                verdict[rc] = False
            elif owner and owner != me and _alive(owner):
                if rc == target:
                    raise RuntimeError(f"{conf} belongs to a live test cluster of process {owner}; use another folder")
                verdict[rc] = False
            else:
                verdict[rc] = bool(owner) or rc == target or (not os.path.exists(rc) and rc.startswith(tmp))
        if verdict[rc]:
            stale.append((pid, name, c))
    if stale:
        kids = {}
        for pid, (ppid, _, _) in procs.items():
            kids.setdefault(ppid, []).append(pid)
        jobs, todo = [], [p for p, n, _ in stale if n == "slurmstepd"]
        while todo:  # the jobs' processes, under their slurmstepd
            jobs += (k := kids.get(todo.pop(), []))
            todo += k
        _kill([p for p in jobs if p != me], timeout=2)
        _kill([p for p, _, _ in stale])
    return stale


def munge_ok():
    try:
        m = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        return m.returncode == 0 and subprocess.run(["unmunge"], input=m.stdout, capture_output=True,
                                                    timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_munge():
    "Start munged (as user munge, as it requires) unless a working one answers. Left running at stop."
    if munge_ok():
        return False
    subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", "/run/munge"], check=True)
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "--create"], check=True, capture_output=True)
    errs = []
    for extra in ([], ["--force"]):  # --force: a stale socket left by a munged that died
        p = subprocess.run(["runuser", "-u", "munge", "--", _which("munged"), *extra], capture_output=True, text=True)
        errs.append(p.stderr.strip())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if munge_ok():
                return True
            time.sleep(0.1)
    log = _tail("/var/log/munge/munged.log", 10)
    raise RuntimeError("could not start munged:\n" + "\n".join(errs) + "\nlog:\n" + log)


def _field(line, name):
    m = re.search(rf"(?:^|\s){name}=(\S*)", line)
    return m.group(1) if m else None


class LocalSlurm:
    """A single-node SLURM cluster (node `localhost`, partition `debug`) whose files live in a work folder.

    Example (as in the `slurm` fixture of tests/conftest.py):

        with LocalSlurm().start(folder) as s:          # or s = LocalSlurm().start(folder); ...; s.stop()
            job = s.sbatch("--array=0-2", "--wrap", "true")
            s.wait_job(job)                            # {0: ('COMPLETED', '0:0'), 1: ..., 2: ...}

    Attributes after start: `conf` (its slurm.conf), `procs` ({'slurmctld': Popen, 'slurmd': Popen}),
    `ports`, `stale_killed` (leftovers of earlier runs that start killed), `start_s`; `stop_s` after stop.
    """

    partition = "debug"

    def __init__(self, timeout=60):
        self.timeout = timeout  # seconds for the cluster to run its probe job
        self.workdir = self.conf = None
        self.procs = {}
        self._old_conf = None
        self._own_dir = self._started = False
        self.stale_killed = []
        self.start_s = self.stop_s = None

    # ---- set-up
    def _write_conf(self):
        w = self.workdir
        for sub in ("state", "spool", "log"):
            shutil.rmtree(w / sub, ignore_errors=True)
            (w / sub).mkdir(parents=True)
        (w / "spool" / "slurmd").mkdir()
        # the node as slurmd sees it (a RealMemory above what it detects would drain the node)
        hw = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
        node = " ".join(f"{k}={_field(hw, k)}" for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                         "ThreadsPerCore", "RealMemory") if _field(hw, k))
        self.ports = _free_ports(2)  # slurmctld, slurmd
        self.conf = w / "slurm.conf"
        self.conf.write_text(f"""{MARKER} owner={os.getpid()}
ClusterName=hepnbtest
SlurmctldHost=localhost
SlurmctldPort={self.ports[0]}
SlurmdPort={self.ports[1]}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
MpiDefault=none
ReturnToService=2
MinJobAge=86400
KillWait=5
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
StateSaveLocation={w}/state
SlurmdSpoolDir={w}/spool/slurmd
SlurmctldPidFile={w}/state/slurmctld.pid
SlurmdPidFile={w}/spool/slurmd.pid
SlurmctldLogFile={w}/log/slurmctld.log
SlurmdLogFile={w}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 {node} State=UNKNOWN
PartitionName={self.partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")

    def env(self, **extra):
        "os.environ with SLURM_CONF pointing at this cluster (plus `extra`)."
        return {**os.environ, "SLURM_CONF": str(self.conf), **{k: str(v) for k, v in extra.items()}}

    def _spawn(self, name, *args):
        log = open(self.workdir / "log" / f"{name}.out", "ab")
        with log:  # -D: stay in the foreground so that the PID we hold is the daemon's
            p = subprocess.Popen([_which(name), "-D", "-f", str(self.conf), *args], env=self.env(),
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # Ctrl-C in pytest must not reach them before stop()
        self.procs[name] = p

    def logs(self, n=30):
        "The last `n` lines of each daemon's log."
        return "\n".join(f"--- {f.name}\n{_tail(f, n)}" for f in sorted((self.workdir / "log").glob("*")))

    def start(self, workdir=None):
        "Start the cluster with its files in `workdir` (a new temporary folder if None); returns self."
        if self._started:
            raise RuntimeError("cluster already started")
        ok, why = available()
        if not ok:
            raise RuntimeError(why)
        t0 = time.monotonic()
        self._own_dir = workdir is None  # removed again at stop
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="hepnb-slurm-")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stale_killed = kill_stale(self.workdir / "slurm.conf")
        ensure_munge()
        self._write_conf()
        self._old_conf = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(self.conf)
        _LIVE.add(os.path.realpath(self.conf))
        self._started = True
        try:
            self._spawn("slurmctld", "-i")
            self._spawn("slurmd", "-N", "localhost")
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.start_s = time.monotonic() - t0
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + self.timeout
        last = ""
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode} at start-up\n{self.logs()}")
            try:  # first the node must have registered (its state is UNKNOWN* until then) ...
                n = subprocess.run(["scontrol", "show", "node", "-o", "localhost"], env=self.env(),
                                   capture_output=True, text=True, timeout=15)
                state = _field(n.stdout, "State") or ""
                up = state.startswith(("IDLE", "MIXED", "ALLOCATED")) and "NOT_RESPONDING" not in state
                if n.returncode != 0 or not up:
                    last = f"node state {state!r} {n.stderr.strip()}"
                    time.sleep(0.05)
                    continue
                # ... then it must run a job; --immediate: give up (and drop the job) unless it starts at once
                r = subprocess.run(["srun", "--immediate=5", "-N1", "-n1", "-t1", "-J", "probe", "true"],
                                   env=self.env(), capture_output=True, text=True, timeout=15)
                if r.returncode == 0:
                    return
                last = r.stderr.strip()
            except subprocess.TimeoutExpired:
                last = "srun probe timed out"
            time.sleep(0.2)
        raise TimeoutError(f"local SLURM cluster not ready after {self.timeout}s (probe `srun true`: {last})\n"
                           f"{self.logs()}")

    # ---- tear-down
    def stop(self):
        "Cancel every job, wait for them to go, terminate slurmd then slurmctld by PID. Safe to call twice."
        if not self._started:
            return
        t0 = time.monotonic()
        try:
            ctld = self.procs.get("slurmctld")
            if ctld is not None and ctld.poll() is None:
                env = self.env()
                subprocess.run(["scancel", "-u", str(os.getuid())], env=env, capture_output=True, timeout=15)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    q = subprocess.run(["squeue", "-h", "-o", "%i", "-t", "PD,R,CG,CF,S"], env=env,
                                       capture_output=True, text=True, timeout=15)
                    if q.returncode != 0 or not q.stdout.strip():
                        break
                    time.sleep(0.1)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            for name in ("slurmd", "slurmctld"):
                if name in self.procs:
                    p = self.procs.pop(name)
                    _kill([p.pid])
                    p.wait()
            self.procs.clear()
            self._started = False
            _LIVE.discard(os.path.realpath(self.conf))
            if self._own_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            if self._old_conf is None:
                if os.environ.get("SLURM_CONF") == str(self.conf):
                    del os.environ["SLURM_CONF"]
            else:
                os.environ["SLURM_CONF"] = self._old_conf
            self.stop_s = time.monotonic() - t0

    def __enter__(self):
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- using it
    def run(self, *args, check=True, timeout=60, **kw):
        "Run a Slurm command against this cluster; CompletedProcess (text)."
        r = subprocess.run([str(a) for a in args], env=kw.pop("env", self.env()), capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, args))} -> exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def sbatch(self, *args, **kw):
        "Submit with `sbatch --parsable ARGS`; the job id (int)."
        return int(self.run("sbatch", "--parsable", *args, **kw).stdout.strip().split(";")[0])

    def wait_job(self, job_id, timeout=30, poll=0.1):
        return wait_job(job_id, timeout, poll, env=self.env() if self.conf else None)


def job_states(job_id, env=None):
    """{key: (JobState, ExitCode)} from `scontrol show job -o ID`: one entry per array task (key ArrayTaskId,
    an int; pending tasks may be a range string such as '1-2') or, for a plain job, its job id (int).
    ExitCode is Slurm's 'code:signal' string, e.g. '3:0'."""
    r = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], env=env or os.environ,
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"scontrol show job {job_id}: {r.stderr.strip() or r.stdout.strip()}")
    out = {}
    for line in r.stdout.splitlines():
        if not line.strip():
            continue
        task = _field(line, "ArrayTaskId")
        key = (int(task) if task.isdigit() else task) if task else int(_field(line, "JobId"))
        out[key] = (_field(line, "JobState"), _field(line, "ExitCode"))
    return out


def wait_job(job_id, timeout=30, poll=0.1, env=None):
    """Poll `scontrol show job -o ID` until every task of the job (all array tasks) has left the active
    states (PENDING, RUNNING, CONFIGURING, COMPLETING, ...); return `job_states(job_id)`.
    TimeoutError (with the last states) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        st = job_states(job_id, env)
        if st and not any(s in ACTIVE_STATES for s, _ in st.values()):
            return st
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still active after {timeout}s: {st}")
        time.sleep(poll)

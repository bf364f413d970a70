"""Benchmark of hepnb campaigns: the per-notebook overhead of a campaign run against a bare papermill
execution of the same notebook, and the wall time of an N-run campaign against N / parallel x one run.
Prints Markdown tables.

    python benchmarks/bench_campaign.py                    # local executor, ~1 min on 2 cores
    python benchmarks/bench_campaign.py --slurm            # also on a localhost SLURM cluster (root; tests/slurm_cluster.py)

The notebook does a fixed amount of work (`--work` seconds of sleep) so that overheads stand out.
"""
from __future__ import annotations
import argparse, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
HEPNB = str(Path(sys.executable).with_name("hepnb"))


def notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    p = nbformat.v4.new_code_cell("work = 1.0\nx = 0\nrun_dir = ''"); p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("import time\ntime.sleep(work)\nprint(x)")]
    path = folder / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def timed(cmd, env=None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **(env or {})}, cwd=ROOT)
    return time.perf_counter() - t0


def spec(folder: Path, name: str, n: int, work: float, executor: str = "local", parallel: int = 0) -> Path:
    s = folder / f"{name}.yaml"
    s.write_text(f"campaign: {name}\nexecutor: {executor}\nmax_parallel: {parallel}\nresources: {{cpus: 1, mem: 200M}}\n"
                 f"parameters: {{work: {work}}}\nstages:\n  - {{name: s, notebook: nb.ipynb, grid: {{x: {list(range(n))}}}}}\n")
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=float, default=2.0, help="seconds of work in the notebook")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=6, help="N for the array measurement")
    ap.add_argument("--slurm", action="store_true", help="also measure the SLURM executor on a localhost cluster")
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="bench_campaign_"))
    env = {"HEPNB_PATHS_RUNS": str(tmp / "runs"), "HEPNB_PATHS_REPORTS": str(tmp / "reports")}
    nb = notebook(tmp)
    rows = []
    bare = [timed([sys.executable, "-m", "papermill", str(nb), str(tmp / f"bare{i}.ipynb"), "-p", "work", str(a.work)], env)
            for i in range(a.repeats)]
    rows.append(("bare `papermill in.ipynb out.ipynb` (new process)", statistics.median(bare)))
    one = []
    for i in range(a.repeats):
        one.append(timed([HEPNB, "campaign", "run", str(spec(tmp, f"one{i}", 1, a.work))], env))
    rows.append(("`hepnb campaign run` of 1 run (worker, manifest, HTML report, index)", statistics.median(one)))
    print(f"- machine: {platform.machine()}, {cores} CPUs, Python {platform.python_version()}; notebook work {a.work} s; "
          f"median of {a.repeats}")
    print("\n| what | wall s | vs bare papermill |\n|---|---|---|")
    for what, t in rows: print(f"| {what} | {t:.2f} | {t / rows[0][1]:.2f} |")

    print(f"\n| executor | runs N | parallel | wall s | N / parallel x one run s | ratio |\n|---|---|---|---|---|---|")
    par = min(cores, a.runs)
    t = timed([HEPNB, "campaign", "run", str(spec(tmp, "array-local", a.runs, a.work, "local", par))], env)
    ideal = a.runs / par * statistics.median(one)
    print(f"| local | {a.runs} | {par} | {t:.2f} | {ideal:.2f} | {t / ideal:.2f} |")
    if a.slurm:
        sys.path.insert(0, str(ROOT / "tests"))
        from slurm_cluster import LocalSlurm
        with LocalSlurm().start(tmp / "slurm"):
            t1 = timed([HEPNB, "campaign", "run", str(spec(tmp, "one-slurm", 1, a.work, "slurm"))], env)
            t = timed([HEPNB, "campaign", "run", str(spec(tmp, "array-slurm", a.runs, a.work, "slurm"))], env)
        print(f"| slurm (1 run: {t1:.2f} s) | {a.runs} | {par} (node CPUs) | {t:.2f} | {a.runs / par * t1:.2f} | {t / (a.runs / par * t1):.2f} |")
    print(f"\nworkdir: {tmp}")


if __name__ == "__main__":
    main()

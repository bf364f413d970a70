"""`hepnb ingest` over every ROOT file of the scikit-hep test-data set, compared with what uproot reads.

Each tree-like object (TTree, TNtuple, RNTuple; up to three per file, in the file's order) is ingested with
the `hepnb ingest` command, in a subprocess with a 120 s limit. An ingested tree must have every column equal
to uproot's own read of it (`tree.arrays(library="ak")`; NaN equals NaN, and int/float/bool/str are told
apart); a refused one must get one line on stderr that starts with `hepnb: error: ` and the file's path.
A file uproot cannot open, or that holds no tree, is ingested once without --tree and must be refused.

    OMP_NUM_THREADS=1 python benchmarks/ingest_testdata.py                 # all 140 files, about 5 min on 2 cores
    OMP_NUM_THREADS=1 python benchmarks/ingest_testdata.py --match HZZ     # files whose name contains HZZ

Results: ingested-equal, refused (fine), and the failures DIFFERENT, traceback, timeout and bad-refusal (a
refusal of more than one line, or one that does not start with the file). The exit status is 1 if any failure.
Data: scikit-hep-testdata 0.3.12, the last release whose wheel ships its ROOT files (later ones download).
"""
from __future__ import annotations
import argparse, math, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import awkward as ak
import skhep_testdata
import uproot

from hepnb.dataset import open_dataset

TREE_CLASSES = ("TTree", "TNtuple", "TNtupleD", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")
FAILURES = ("DIFFERENT", "traceback", "timeout", "bad-refusal")
HEPNB = Path(sys.executable).with_name("hepnb")


def data_files() -> list[Path]:
    "Every ROOT file the installed scikit-hep-testdata ships."
    folder = Path(skhep_testdata.data_path("uproot-HZZ.root")).parent
    return sorted(folder.glob("*.root"))


def trees_of(path: Path) -> list[str | None]:
    "Up to three tree-like objects of a file (paths without cycle); [None] when uproot finds none or fails."
    try:
        with uproot.open(path) as f:
            names = [k.rsplit(";", 1)[0] for k, c in f.classnames().items() if c in TREE_CLASSES]
    except Exception:
        return [None]
    return list(dict.fromkeys(names))[:3] or [None]


def plain(x):
    "A value from `to_list`/`to_pylist` in a form where equal data compares equal: NaN == NaN, tuple == struct."
    if isinstance(x, float):
        return ("float", "nan") if math.isnan(x) else ("float", x)
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, int):
        return ("int", x)
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, tuple):                  # awkward tuples become Arrow structs with fields "0", "1", ...
        return {str(i): plain(v) for i, v in enumerate(x)}
    if isinstance(x, list):
        return [plain(v) for v in x]
    return x


def uproot_reads(path: Path, tree: str):
    "What uproot reads: `tree.arrays()`, and a function for a single branch (columns named by their path)."
    f = uproot.open(path)
    t = f[tree]
    return t.arrays(library="ak"), (lambda name: t[name].array(library="ak"))


def compare(path: Path, tree: str, out: Path) -> str | None:
    "None if every ingested column equals uproot's read of it, else what differs."
    ds = open_dataset(out)
    got = ds.read()
    names = ds.columns                # from the manifest: a dataset without rows has no shard to read them from
    want, branch = uproot_reads(path, tree)
    if ds.num_rows != len(want) or got.num_rows != len(want):
        return f"{ds.num_rows} rows ingested, uproot reads {len(want)}"
    # every column uproot reads is there: under its name, or under its path where two branches share a name
    for name in want.fields:
        if name not in names and not any(c.endswith("/" + name) for c in names):
            return f"column {name} that uproot reads is missing"
    if len(want) == 0:
        return None
    for name in names:
        ref = want[name] if name in want.fields else branch(name)
        a, b = plain(got.column(name).to_pylist()), plain(ak.to_list(ref))
        if a != b:
            row = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
            return f"column {name} differs (first at row {row})"
    return None


def run_one(path: Path, tree: str | None, work: Path, timeout: float) -> tuple[str, float, str]:
    "(result, seconds, message) for one `hepnb ingest`."
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(HEPNB), "ingest", str(path), "--out", str(out)] + (["--tree", tree] if tree else [])
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, f"over {timeout:.0f} s"
    seconds = time.perf_counter() - t0
    err = p.stderr.strip()
    if "Traceback" in err:
        return "traceback", seconds, err.splitlines()[-1]
    if p.returncode != 0:
        lines = err.splitlines()
        if len(lines) == 1 and lines[0].startswith(f"hepnb: error: {path}"):
            return "refused", seconds, lines[0].removeprefix("hepnb: error: ")
        return "bad-refusal", seconds, " | ".join(lines)[:300]
    try:
        diff = compare(path, tree, out) if tree else "ingested, but the file has no tree uproot opens"
    except Exception as e:
        diff = f"uproot cannot read what hepnb ingested: {type(e).__name__}: {str(e).splitlines()[0][:150]}"
    return ("DIFFERENT", seconds, diff) if diff else ("ingested-equal", seconds, "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--match", default="", help="only files whose name contains this")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per ingest")
    ap.add_argument("--width", type=int, default=160, help="cut the message column to this many characters")
    args = ap.parse_args(argv)
    files = [p for p in data_files() if args.match in p.name]
    folder = files[0].parent if files else ""
    print(f"scikit-hep-testdata {skhep_testdata.__version__}, uproot {uproot.__version__}: {len(files)} files in {folder}")
    print(f"{'file':42s} {'tree':28s} {'result':15s} {'s':>6s}  message")
    counts: dict[str, int] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hepnb-testdata-") as tmp:
        for path in files:
            for tree in trees_of(path):
                result, seconds, msg = run_one(path, tree, Path(tmp), args.timeout)
                counts[result] = counts.get(result, 0) + 1
                msg = msg.replace(str(folder) + "/", "")
                if len(msg) > args.width:
                    msg = msg[:args.width - 1] + "…"
                print(f"{path.name:42s} {tree or '-':28s} {result:15s} {seconds:6.1f}  {msg}", flush=True)
    total = sum(counts.values())
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("ingested-equal", "refused") + FAILURES)
    print(f"\n{total} trees of {len(files)} files in {time.perf_counter() - start:.0f} s: {summary}")
    return 1 if any(counts.get(k, 0) for k in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())

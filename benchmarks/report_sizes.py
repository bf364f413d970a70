"""Page sizes of a reduced quickstart campaign: the quickstart's stages on small sizes (the display stage left out,
the trainings one epoch on a small model), run into a temporary folder; prints one row per file of the reports.

    OMP_NUM_THREADS=1 python benchmarks/report_sizes.py [--keep DIR] [--n-train 600] [--n-test 400]

`--n-test 10000` evaluates on as many events as the quickstart does (the figures' data grow with it).
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def reduced_spec(folder: Path, n_train: int, n_test: int) -> Path:
    spec = yaml.safe_load((ROOT / "campaigns/quickstart.yaml").read_text())
    spec["campaign"] = "sizes"
    spec["stages"] = [s for s in spec["stages"] if s["name"] != "display"]
    for s in spec["stages"]:
        s["notebook"] = str((ROOT / "campaigns" / s["notebook"]).resolve())
        if s["name"] == "simulate": s["parameters"].update(n_train=n_train, n_test=n_test)
        if s["name"] == "train":
            s["points"] = [{"task": p["task"]} for p in s["points"]]
            s["parameters"].update(epochs=1, d_model=16, n_layers=1, warmup_steps=0)
    path = folder / "sizes.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", type=Path, help="run in this folder (kept) instead of a temporary one")
    ap.add_argument("--n-train", type=int, default=600, help="training events")
    ap.add_argument("--n-test", type=int, default=400, help="held-out events (explored and evaluated)")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["HEPNB_PATHS_RUNS"] = str(folder / "runs")
    os.environ["HEPNB_PATHS_REPORTS"] = str(folder / "reports")
    from hepnb.campaign import run_campaign
    t0 = time.monotonic()
    c = run_campaign(reduced_spec(folder, args.n_train, args.n_test), show=False, max_parallel=2)
    print(f"campaign ran in {time.monotonic() - t0:.0f} s; reports in {c.reports}")
    print("| page | size (MB) |\n|---|---|")
    total = 0
    for p in sorted(c.reports.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            print(f"| {p.relative_to(c.reports)} | {p.stat().st_size / 1e6:.2f} |")
    print(f"| all files | {total / 1e6:.2f} |")


if __name__ == "__main__":
    main()

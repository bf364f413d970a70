"""Page sizes of a reduced quickstart campaign: the quickstart's stages on small sizes (the display stage left out),
run into a temporary folder; prints one row per HTML page and the plotly.js copies.

    OMP_NUM_THREADS=1 python benchmarks/report_sizes.py [--keep DIR]
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def reduced_spec(folder: Path) -> Path:
    spec = yaml.safe_load((ROOT / "campaigns/quickstart.yaml").read_text())
    spec["campaign"] = "sizes"
    spec["stages"] = [s for s in spec["stages"] if s["name"] != "display"]
    for s in spec["stages"]:
        s["notebook"] = str((ROOT / "campaigns" / s["notebook"]).resolve())
        if s["name"] == "simulate": s["parameters"].update(n_train=600, n_test=400)
        if s["name"] == "train":
            s["points"] = [{"task": p["task"]} for p in s["points"]]
            s["parameters"].update(epochs=1, d_model=16, n_layers=1, warmup_steps=0)
    path = folder / "sizes.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", type=Path, help="run in this folder (kept) instead of a temporary one")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["HEPNB_PATHS_RUNS"] = str(folder / "runs")
    os.environ["HEPNB_PATHS_REPORTS"] = str(folder / "reports")
    from hepnb.campaign import run_campaign
    t0 = time.monotonic()
    c = run_campaign(reduced_spec(folder), show=False, max_parallel=2)
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

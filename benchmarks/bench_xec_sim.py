"""Speed of the XEC fast simulation on one core: events per second per preset, the time split between the light
(solid angles, Fresnel, Rayleigh, arrival times) and the rest, and the whole `simulate_dataset` with its Parquet
writing. Prints a Markdown table.

    OMP_NUM_THREADS=1 python benchmarks/bench_xec_sim.py              # ~1 min
    OMP_NUM_THREADS=1 python benchmarks/bench_xec_sim.py --events 500
"""
from __future__ import annotations
import argparse, os, platform, tempfile, time
from pathlib import Path

import numpy as np

from hepnb.detectors.xec import sim as S


def best_of(f, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); f(); times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many (the machine is shared)")
    a = ap.parse_args()
    n = a.events
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; {n} events, best of {a.repeat}\n")
    print("| preset | events/s (simulate_run) | light ms/event | rest ms/event "
          "| events/s (simulate_dataset, Parquet) |")
    print("|---|---|---|---|---|")
    for preset in ("signal", "uniform15to60", "pileup"):
        cfg = S.SimConfig(**S.PRESETS[preset])
        S.simulate_run(0, 1, 20, cfg)                                      # warm the caches
        total = best_of(lambda: S.simulate_run(0, 1, n, cfg), a.repeat)
        rng = np.random.default_rng(0)
        g = S.sample_gammas(rng, n, cfg, cfg.energy_min, cfg.energy_max)
        sh = S.shower(rng, g, cfg)
        lt = best_of(lambda: S.light(sh, cfg), a.repeat) * (1 + cfg.pileup_prob)
        with tempfile.TemporaryDirectory() as d:
            ds = best_of(lambda: S.simulate_dataset(Path(d) / "x", n, seed=1, config=cfg, overwrite=True), a.repeat)
        print(f"| {preset} | {n / total:.0f} | {lt / n * 1e3:.2f} | {(total - lt) / n * 1e3:.2f} | {n / ds:.0f} |")


if __name__ == "__main__":
    main()

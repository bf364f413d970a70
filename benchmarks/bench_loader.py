"""Benchmark of hepnb.loader: events/s and hits/s into model-ready tensors next to a raw pyarrow read of the
same columns, and peak memory for N and 10 N events. Prints a Markdown table.

    python benchmarks/bench_loader.py                      # defaults: < 2 min on 2 cores
    python benchmarks/bench_loader.py --events 200000 --mem-events 50000 --workers 0,2,4 --shuffle on

Data: the ATAR simulator (`hepnb.detectors.atar.sim.simulate_dataset`) when importable, otherwise the
loader's generic synthetic generator (`hepnb.loader.synthetic_dataset`); the output says which.
"""
from __future__ import annotations
import argparse, json, os, platform, subprocess, sys, tempfile, textwrap, time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from hepnb.loader import SYNTHETIC_HIT_FEATURES, LoaderConfig, make_loader, synthetic_dataset


def make_data(kind: str, path: Path, n: int, seed: int, rows_per_file: int):
    "Write `n` events with the chosen generator; return (dataset, config without batching options)."
    if kind == "atar":
        from hepnb.detectors.atar.sim import simulate_dataset
        ds = simulate_dataset(path, n, seed=seed, rows_per_file=rows_per_file)
        cfg = LoaderConfig(hit_features=["hits_coord", "hits_z", "hits_edep", "hits_strip_type", "hits_time"],
                           hit_targets=["hits_particle_mask"], event_columns=["pion_stop_x", "pion_stop_y", "pion_stop_z"])
    else:
        ds = synthetic_dataset(path, n, seed=seed, mean_hits=50, rows_per_file=rows_per_file, row_group_size=8192)
        cfg = LoaderConfig(hit_features=SYNTHETIC_HIT_FEATURES, hit_targets=["hits_label"], event_columns=["target_x", "target_y"])
    return ds, cfg


def raw_read(ds, columns, threads: bool) -> float:
    "Wall time of reading the columns of every shard into one Arrow table."
    t0 = time.perf_counter()
    t = pa.concat_tables([pq.read_table(p, columns=columns, use_threads=threads) for p in ds.files])
    s = time.perf_counter() - t0
    del t
    return s


def epoch(loader, e: int) -> tuple[float, int, int]:
    "(seconds, events, hits) of epoch `e` of a loader."
    loader.dataset.set_epoch(e)
    t0 = time.perf_counter(); n = h = 0
    for b in loader:
        # the same count for both layouts, a 256-element sum (summing the [B, H] mask would time torch's
        # thread pool waking for a 40k-element reduction, not the loader)
        n += len(b); h += int(b.n_hits.sum())
    return time.perf_counter() - t0, n, h


MEM_CHILD = textwrap.dedent("""
    import json, resource, sys
    import psutil
    def hwm():
        # Peak RSS of this process image in bytes: VmHWM (reset by exec). Not ru_maxrss: Linux carries the
        # forking parent's peak over fork+exec, so a fat parent would hide the child's own peak.
        try:
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024
        except OSError: pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    from hepnb.loader import EventStream, LoaderConfig
    cfg = LoaderConfig(**json.loads(sys.argv[2]))
    st = EventStream(sys.argv[1], cfg)
    proc = psutil.Process()
    base = top = proc.memory_info().rss
    n = 0
    for b in st:
        n += len(b)
        top = max(top, proc.memory_info().rss)
    peak = hwm()
    print(json.dumps({"events": n, "rss_base": base, "rss_top": top, "peak": peak}))
""")


def mem_run(ds, cfg) -> dict:
    "Peak RSS of a fresh process iterating the whole dataset in the main process (num_workers=0)."
    params = {k: v for k, v in vars(replace(cfg, num_workers=0)).items()}
    out = subprocess.run([sys.executable, "-c", MEM_CHILD, str(ds.path), json.dumps(params)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000, help="events for the throughput runs")
    ap.add_argument("--mem-events", type=int, default=50_000,
                    help="N for the memory runs (also 10 N); keep N well above the shuffle buffer: with N = 20 000 "
                         "(two buffers) the N run ends before the shuffle pool reaches its steady size")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", default="0,2", help="comma-separated num_workers values")
    ap.add_argument("--layouts", default="padded,packed")
    ap.add_argument("--shuffle", default="on,off", help="comma-separated: on (buffer of 10k events), off (stored order)")
    ap.add_argument("--no-shuffle", action="store_true", help="same as --shuffle off")
    ap.add_argument("--rows-per-file", type=int, default=20_000)
    ap.add_argument("--data", choices=["auto", "atar", "synthetic"], default="auto")
    ap.add_argument("--workdir", default=None, help="where to write the datasets (default: a temporary folder)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds of one raw read and one epoch of each loader, interleaved (the best of each is shown: "
                         "a busy spell slows both sides of a ratio)")
    a = ap.parse_args(argv)

    kind = a.data
    if kind == "auto":
        try:
            from hepnb.detectors.atar.sim import simulate_dataset  # noqa: F401
            kind = "atar"
        except ImportError:
            kind = "synthetic"
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_loader_"))
    t0 = time.perf_counter()
    big_n = 10 * a.mem_events
    sizes = {a.mem_events, big_n, a.events}
    data = {n: make_data(kind, work / f"{kind}-{n}", n, seed=1, rows_per_file=a.rows_per_file) for n in sorted(sizes)}
    t_gen = time.perf_counter() - t0
    ds, cfg = data[a.events]
    cfg = replace(cfg, batch_size=a.batch_size)
    shuffles = [False] if a.no_shuffle else [{"on": True, "off": False}[x] for x in a.shuffle.split(",")]
    n_hits_total = None

    loaders = {(shuffle, layout, w): make_loader(ds, replace(cfg, layout=layout, num_workers=w, shuffle=shuffle))
               for shuffle in shuffles for layout in a.layouts.split(",") for w in [int(x) for x in a.workers.split(",")]}
    first = {k: epoch(ld, 0) for k, ld in loaders.items()}           # epoch 1: worker start-up included
    raw = {True: float("inf"), False: float("inf")}
    steady = {k: (float("inf"), 0, 0) for k in loaders}
    for r in range(a.rounds):
        for threads in raw: raw[threads] = min(raw[threads], raw_read(ds, cfg.columns, threads))
        for k, ld in loaders.items(): steady[k] = min(steady[k], epoch(ld, r + 1))
    rows = [(f"raw pyarrow read_table ({'threads' if threads else '1 thread'})", "-", s, None, a.events)
            for threads, s in raw.items()]
    raw_s = raw[True]
    runs = [(*k, [first[k], steady[k]]) for k in loaders]
    n_hits_total = steady[next(iter(loaders))][2]
    del loaders
    print(f"## hepnb.loader benchmark\n")
    print(f"- data: **{'ATAR simulator (hepnb.detectors.atar.sim)' if kind == 'atar' else 'synthetic generator (hepnb.loader.synthetic_dataset), ATAR simulator not importable'}**, "
          f"{a.events} events, {n_hits_total} hits ({n_hits_total / a.events:.1f}/event), {len(ds.files)} shards, "
          f"columns: {len(cfg.hit_features)} hit features, {len(cfg.hit_targets)} hit target, {len(cfg.event_columns)} event columns")
    print(f"- loader: batch {cfg.batch_size}, shuffle on = buffer of {cfg.shuffle_buffer} events, off = stored order; "
          f"workers use `{cfg.multiprocessing_context or 'forkserver'}`; epoch 1 includes worker start-up; then {a.rounds} rounds of one raw read and one epoch of each loader, interleaved, the best of each shown")
    print(f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}, "
          f"pyarrow {pa.__version__}; generation took {t_gen:.1f} s\n")
    print("| reader | shuffle | layout | workers | epoch 1 s | steady epoch s | events/s | hits/s | events/s vs raw read (threads) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, _, s, _, n in rows:
        print(f"| {name} | - | - | - | - | {s:.3f} | {n / s:,.0f} | {n_hits_total / s:,.0f} | {raw_s / s:.2f} |")
    for shuffle, layout, w, r in runs:
        (s1, _, _), (s2, n, h) = r[0], min(r[1:])          # steady state: the best later epoch
        print(f"| hepnb.loader make_loader | {'on' if shuffle else 'off'} | {layout} | {w} | {s1:.3f} | {s2:.3f} | {n / s2:,.0f} | {h / s2:,.0f} | {raw_s / s2:.2f} |")

    print(f"\nPeak memory (padded, one process, num_workers=0; each worker process has the same bound):\n")
    print("| shuffle | events | peak RSS MiB (VmHWM) | RSS before iterating MiB | largest RSS while iterating MiB | added by iterating MiB |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for shuffle in shuffles:
        mem = {}
        for label, n in (("N", a.mem_events), ("10 N", big_n)):
            d, _ = data[n]
            mem[label] = (n, mem_run(d, replace(cfg, layout="padded", shuffle=shuffle)))
        for label, (n, m) in mem.items():
            mb = lambda x: x / 2**20
            print(f"| {'on' if shuffle else 'off'} | {label} = {n} | {mb(m['peak']):.0f} | {mb(m['rss_base']):.0f} | {mb(m['rss_top']):.0f} | {mb(m['rss_top'] - m['rss_base']):.0f} |")
        r_peak = mem["10 N"][1]["peak"] / mem["N"][1]["peak"]
        r_loop = (mem["10 N"][1]["rss_top"] - mem["10 N"][1]["rss_base"]) / max(mem["N"][1]["rss_top"] - mem["N"][1]["rss_base"], 1)
        ratios.append(f"shuffle {'on' if shuffle else 'off'}: peak RSS {r_peak:.3f}, RSS added by iterating {r_loop:.3f}")
    print(f"\nRatio 10 N / N: {'; '.join(ratios)}.")
    print(f"\nTotal benchmark time {time.perf_counter() - t0:.0f} s; datasets in {work}")


if __name__ == "__main__":
    main()

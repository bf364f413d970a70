"""Benchmark of packed graphs: events of 10^5 hits and ~10^6 edges (a silicon tracker's graph) streamed through
`make_loader` with `edge_index`; peak RSS for N and 10 N events in fresh processes (streaming: the ratio should stay
near 1) and events/s. Prints a table.

    python benchmarks/bench_graph.py                      # N = 6 events, 10 N = 60 (~0.9 GB of Parquet)
    python benchmarks/bench_graph.py --events 4 --hits 100000 --edges 1000000
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, tempfile, textwrap, time
from pathlib import Path

import numpy as np
import pyarrow as pa

from hepnb.dataset import write_dataset
from hepnb.schema import Column, Schema

SCHEMA = Schema("bench.graph", 1, (
    Column("event_id", "event", pa.int64()), *(Column(f"hits_{a}", "hit", pa.float32()) for a in "xyz"),
    Column("edge_src", "edge", pa.int32(), index_of="hit"), Column("edge_dst", "edge", pa.int32(), index_of="hit"),
    Column("edge_y", "edge", pa.bool_())))


def make(path: Path, n: int, hits: int, edges: int):
    rng = np.random.default_rng(0)
    def tables():
        for i in range(n):
            lst = lambda v: pa.ListArray.from_arrays(pa.array(np.array([0, len(v)], np.int32)), pa.array(v))
            yield pa.table({"event_id": pa.array([i], pa.int64()),
                            **{f"hits_{a}": lst(rng.random(hits, np.float32)) for a in "xyz"},
                            "edge_src": lst(rng.integers(0, hits, edges, dtype=np.int32)),
                            "edge_dst": lst(rng.integers(0, hits, edges, dtype=np.int32)),
                            "edge_y": lst(rng.random(edges) < 0.1)})
    return write_dataset(path, tables(), schema=SCHEMA, rows_per_file=20, row_group_size=1)


CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from hepnb.loader import LoaderConfig, make_loader
    cfg = LoaderConfig(hit_features=["hits_x", "hits_y", "hits_z"], edge_columns=["edge_src", "edge_dst", "edge_y"],
                       edge_index=("edge_src", "edge_dst"), layout="packed", batch_size=1, shuffle=True,
                       shuffle_buffer=2, read_rows=1)
    t0, n, e = time.perf_counter(), 0, 0
    for b in make_loader(sys.argv[1], cfg):
        n += len(b); e += b.edge_index.shape[1]
    print(json.dumps({"events": n, "edges": e, "s": time.perf_counter() - t0,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def run(path) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=6)
    ap.add_argument("--hits", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=1_000_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rows = []
        for n in (a.events, 10 * a.events):
            ds = make(Path(d) / f"g{n}", n, a.hits, a.edges)
            mb = sum(p.stat().st_size for p in ds.files) / 1e6
            rows.append((n, mb, run(ds.path)))
        print(f"{a.hits:,} hits and {a.edges:,} edges per event, packed, batch 1, shuffled; "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}\n")
        print("| events | Parquet MB | events/s | edges/s | peak RSS MB |\n|---|---|---|---|---|")
        for n, mb, r in rows:
            print(f"| {n} | {mb:.0f} | {r['events'] / r['s']:.1f} | {r['edges'] / r['s']:,.0f} | {r['rss_mb']:.0f} |")
        print(f"\npeak RSS 10N / N: {rows[1][2]['rss_mb'] / rows[0][2]['rss_mb']:.2f}")


if __name__ == "__main__":
    main()

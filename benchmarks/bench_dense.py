"""Benchmark of the dense loader path (a fixed-size level, e.g. a calorimeter's 4760 channels): events/s into a
`[B, S, C]` tensor next to a raw pyarrow read of the same columns into one NumPy array, in one run. Prints a table.

    python benchmarks/bench_dense.py                      # 4000 events x 4760 channels x 2 float32 (152 MB)
    python benchmarks/bench_dense.py --events 20000 --channels 4760

Data: random values in a fixed_size_list schema declared here (no detector).
"""
from __future__ import annotations
import argparse, os, tempfile, time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hepnb.dataset import write_dataset
from hepnb.loader import LoaderConfig, make_loader
from hepnb.schema import Column, Level, Schema

COLUMNS = ["npho", "time"]


def make(path: Path, n: int, channels: int, chunk: int = 2000):
    schema = Schema("bench.dense", 1, (Column("event_id", "event", pa.int64()),
                                       *(Column(c, "channel", pa.float32()) for c in COLUMNS)),
                    levels=(Level("channel", size=channels),))
    rng = np.random.default_rng(0)
    def tables():
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            cols = {c: pa.FixedSizeListArray.from_arrays(pa.array(rng.random(m * channels, np.float32)), channels)
                    for c in COLUMNS}
            yield pa.table({"event_id": np.arange(start, start + m, dtype=np.int64), **cols})
    return write_dataset(path, tables(), schema=schema, rows_per_file=2000, compression="none")   # row groups by bytes


def raw(ds, channels: int) -> float:
    "Seconds to read the columns of every shard into one [n, S, C] float32 array (pyarrow + NumPy, no hepnb)."
    t0 = time.perf_counter()
    for p in ds.files:
        for rb in pq.ParquetFile(p).iter_batches(batch_size=8192, columns=COLUMNS, use_threads=False):
            out = np.empty((rb.num_rows, channels, len(COLUMNS)), np.float32)
            for j, c in enumerate(COLUMNS):
                out[:, :, j] = pc.list_flatten(rb.column(c)).to_numpy().reshape(rb.num_rows, channels)
    return time.perf_counter() - t0


def loader(ds, shuffle: bool, batch: int) -> float:
    cfg = LoaderConfig(dense_features=COLUMNS, batch_size=batch, shuffle=shuffle, shuffle_buffer=2000)
    t0 = time.perf_counter()
    n = sum(len(b) for b in make_loader(ds, cfg))
    assert n == ds.num_rows
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--channels", type=int, default=4760)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        ds = make(Path(d) / "ds", a.events, a.channels)
        mb = a.events * a.channels * len(COLUMNS) * 4 / 1e6
        rows = [("raw pyarrow read -> [n, S, C]", min(raw(ds, a.channels) for _ in range(a.repeats)))]
        rows.append(("hepnb dense, in order", min(loader(ds, False, a.batch) for _ in range(a.repeats))))
        rows.append(("hepnb dense, shuffled", min(loader(ds, True, a.batch) for _ in range(a.repeats))))
        print(f"{a.events} events x {a.channels} channels x {len(COLUMNS)} float32 ({mb:.0f} MB), batch {a.batch}, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, best of {a.repeats}\n")
        print("| path | s | events/s | MB/s | vs raw |\n|---|---|---|---|---|")
        base = rows[0][1]
        for name, s in rows:
            print(f"| {name} | {s:.2f} | {a.events / s:,.0f} | {mb / s:,.0f} | {base / s:.2f}x |")


if __name__ == "__main__":
    main()

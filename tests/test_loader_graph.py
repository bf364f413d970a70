"""Graphs in batches: an edge level whose source and target index the event's hits. Packed events shift the edge
ends by the event's first hit (as graph libraries batch); padded ones by b * H. A graph is never truncated."""
import numpy as np
import pyarrow as pa
import pytest
import torch

from hepnb.core import HepnbError
from hepnb.dataset import write_dataset
from hepnb.loader import LoaderConfig, collate, make_loader
from hepnb.schema import Column, Schema, register_schema

SCHEMA = register_schema(Schema("toy.graph", 1, (
    Column("event_id", "event", pa.int64()), Column("hits_x", "hit", pa.float32()),
    Column("edge_src", "edge", pa.int32(), index_of="hit"), Column("edge_dst", "edge", pa.int32(), index_of="hit"),
    Column("edge_true", "edge", pa.bool_()))))


def graphs(n, seed=0):
    "Random events: hits with x = event*1000 + hit number, edges between random hit pairs, truth = same parity."
    rng = np.random.default_rng(seed)
    nh = rng.integers(1, 9, n)
    ne = rng.integers(0, 12, n)
    src = [rng.integers(0, h, e) for h, e in zip(nh, ne)]
    dst = [rng.integers(0, h, e) for h, e in zip(nh, ne)]
    return pa.table({
        "event_id": pa.array(np.arange(n), pa.int64()),
        "hits_x": pa.array([list(i * 1000.0 + np.arange(h)) for i, h in enumerate(nh)], pa.list_(pa.float32())),
        "edge_src": pa.array([s.tolist() for s in src], pa.list_(pa.int32())),
        "edge_dst": pa.array([d.tolist() for d in dst], pa.list_(pa.int32())),
        "edge_true": pa.array([((s % 2) == (d % 2)).tolist() for s, d in zip(src, dst)], pa.list_(pa.bool_()))})


CFG = LoaderConfig(hit_features=["hits_x"], edge_columns=["edge_src", "edge_dst", "edge_true"],
                   edge_index=("edge_src", "edge_dst"), batch_size=16)


def check(b, t):
    "Each edge, read through edge_index, joins two hits of its own event with the stored local numbers."
    x = b.x[..., 0].reshape(-1)                                  # one row per hit (packed) or per padded slot
    src, dst = t.column("edge_src").to_pylist(), t.column("edge_dst").to_pylist()
    want = [(e * 1000.0 + s, e * 1000.0 + d) for e in b.event_id.tolist() for s, d in zip(src[e], dst[e])]
    got = list(zip(x[b.edge_index[0]].tolist(), x[b.edge_index[1]].tolist()))
    assert got == want
    assert b.edge_offsets[-1] == len(want) == b.edges["edge_true"].shape[0]


@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_edge_index_points_at_the_right_hits(layout):
    t = graphs(40)
    check(collate(t, LoaderConfig(**{**CFG.__dict__, "layout": layout})), t)


@pytest.mark.parametrize("workers", [0, 2])
def test_shuffled_graph_batches(tmp_path, workers):
    t = graphs(200, seed=1)
    ds = write_dataset(tmp_path / "g", t, schema=SCHEMA, rows_per_file=80, row_group_size=30)
    cfg = LoaderConfig(**{**CFG.__dict__, "layout": "packed", "shuffle": True, "shuffle_buffer": 50, "num_workers": workers})
    seen = []
    for b in make_loader(ds, cfg):
        check(b, t)
        seen += b.event_id.tolist()
    assert sorted(seen) == list(range(200))


def test_graph_refusals():
    t = graphs(10)
    bad = t.set_column(2, "edge_src", pa.array([[99]] + [[]] * 9, pa.list_(pa.int32())))
    bad = bad.set_column(3, "edge_dst", pa.array([[0]] + [[]] * 9, pa.list_(pa.int32())))
    bad = bad.set_column(4, "edge_true", pa.array([[True]] + [[]] * 9, pa.list_(pa.bool_())))
    with pytest.raises(HepnbError, match=r"\[column edge_src\]: edge end 99 points outside its event's \d hits \(event_id 0\)"):
        collate(bad, CFG, where="g.parquet")
    with pytest.raises(HepnbError, match=r"\[max_hits\]: expected None with edge_index"):
        LoaderConfig(**{**CFG.__dict__, "max_hits": 4}).check()
    with pytest.raises(HepnbError, match=r"\[column edge_dst\]: edge count 1 differs from 'edge_src' \(\d+\) \(event_id 0\)"):
        collate(t.set_column(3, "edge_dst", pa.array([[0]] * 10, pa.list_(pa.int32()))),
                LoaderConfig(hit_features=["hits_x"], edge_columns=["edge_src", "edge_dst"]), where="g.parquet")

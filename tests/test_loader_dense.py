"""Fixed-size levels (e.g. 4760 calorimeter channels) load densely: `Batch.dense [B, S, C]`, no offsets or masks."""
import numpy as np
import pyarrow as pa
import pytest

from hepnb.core import HepnbError
from hepnb.dataset import write_dataset
from hepnb.loader import LoaderConfig, collate, make_loader
from hepnb.schema import Column, Level, Schema, register_schema

S = 12
SCHEMA = register_schema(Schema("toy.calorimeter", 1, (Column("event_id", "event", pa.int64()),
                                       Column("npho", "channel", pa.float32()), Column("time", "channel", pa.float32()),
                                       Column("energy", "event", pa.float32()), Column("hits_e", "hit", pa.float32())),
                levels=(Level("channel", size=S),)))


def table(n, seed=0):
    rng = np.random.default_rng(seed)
    npho, time = rng.random((n, S), np.float32), rng.random((n, S), np.float32)
    nh = rng.integers(0, 4, n)
    hits = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(nh)].astype(np.int32)), pa.array(rng.random(nh.sum(), np.float32)))
    return pa.table({"event_id": np.arange(n, dtype=np.int64) * 3 + 1,
                     "npho": pa.FixedSizeListArray.from_arrays(pa.array(npho.ravel()), S),
                     "time": pa.FixedSizeListArray.from_arrays(pa.array(time.ravel()), S),
                     "energy": rng.random(n, np.float32), "hits_e": hits}), npho, time


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    t, npho, time = table(300)
    ds = write_dataset(tmp_path_factory.mktemp("dense") / "ds", t, schema=SCHEMA, rows_per_file=120, row_group_size=40)
    return ds, npho, time


@pytest.mark.parametrize("workers,shuffle", [(0, False), (0, True), (2, True)])
def test_dense_batches_hold_every_event_once(dataset, workers, shuffle):
    ds, npho, time = dataset
    cfg = LoaderConfig(dense_features=["npho", "time"], event_columns=["energy"], batch_size=32, shuffle=shuffle,
                       shuffle_buffer=50, num_workers=workers)
    seen = []
    for b in make_loader(ds, cfg):
        row = (b.event_id.numpy() - 1) // 3
        assert b.dense.shape == (len(row), S, 2) and b.dense.dtype.is_floating_point and b.mask is None
        assert np.array_equal(b.dense[..., 0].numpy(), npho[row]) and np.array_equal(b.dense[..., 1].numpy(), time[row])
        seen += row.tolist()
    assert sorted(seen) == list(range(300))
    assert (seen != sorted(seen)) == shuffle


def test_dense_beside_hits_and_variable_lists_of_one_length():
    t, npho, _ = table(10)
    b = collate(t, LoaderConfig(dense_features=["npho"], hit_features=["hits_e"], layout="packed"))
    assert b.dense.shape == (10, S, 1) and b.offsets.shape == (11,)
    plain = t.set_column(1, "npho", t.column("npho").cast(pa.list_(pa.float32())))      # a foreign file's plain lists
    assert np.array_equal(collate(plain, LoaderConfig(dense_features=["npho"])).dense[..., 0].numpy(), npho)


def test_dense_refusals(dataset):
    t, _, _ = table(10)
    ragged = t.set_column(1, "npho", pa.array([[1.0] * S] * 9 + [[1.0] * (S - 1)], pa.list_(pa.float32())))
    with pytest.raises(HepnbError, match=rf"\[column npho\]: a dense column has {S} entries in every event, found {S - 1}"):
        collate(ragged, LoaderConfig(dense_features=["npho"]), where="f.parquet")
    with pytest.raises(HepnbError, match=r"\[column npho\]: a hit-level column must be a list column .* found fixed_size_list"):
        make_loader(dataset[0], LoaderConfig(hit_features=["npho"]))
    with pytest.raises(HepnbError, match="level 'hit' \\(list\\), used here as dense-level"):
        make_loader(dataset[0], LoaderConfig(dense_features=["hits_e"]))


def test_read_chunks_and_shuffle_buffer_are_bounded_in_bytes(dataset):
    "An event of S channels x 2 floats is >= 96 bytes: a 1 kB budget holds a few events, whatever the event counts say."
    from hepnb.loader import EventStream
    ds, npho, _ = dataset
    cfg = LoaderConfig(dense_features=["npho", "time"], batch_size=4, shuffle=True, max_chunk_bytes=1000)
    stream = EventStream(ds, cfg)
    assert 96 <= stream.event_bytes <= 200, stream.event_bytes          # values, the key and Parquet levels
    assert stream.config.read_rows == stream.config.shuffle_buffer == 1000 // stream.event_bytes
    rows = sorted(int(i) for b in stream for i in (b.event_id.numpy() - 1) // 3)
    assert rows == list(range(300))


VEC_SCHEMA = register_schema(Schema("toy.vectors", 1, (Column("event_id", "event", pa.int64()),
                                    Column("npho", "channel", pa.float32()), Column("pos", "xyz", pa.float32())),
                                    levels=(Level("channel", size=S), Level("xyz", size=3))))


@pytest.mark.parametrize("shuffle", [False, True])
def test_vector_event_columns(tmp_path, shuffle):
    "A fixed-size list per event (a truth 3-vector) arrives as `events[name]` of shape [B, 3], rows kept together."
    t, npho, _ = table(90)
    pos = np.arange(90 * 3, dtype=np.float32).reshape(90, 3)
    t = pa.table({"event_id": t.column("event_id"), "npho": t.column("npho"),
                  "pos": pa.FixedSizeListArray.from_arrays(pa.array(pos.ravel()), 3)})
    ds = write_dataset(tmp_path / "v", t, schema=VEC_SCHEMA, row_group_size=20)
    cfg = LoaderConfig(dense_features=["npho"], event_columns=["pos"], batch_size=16, shuffle=shuffle, shuffle_buffer=30)
    seen = []
    for b in make_loader(ds, cfg):
        row = (b.event_id.numpy() - 1) // 3
        assert b.events["pos"].shape == (len(row), 3) and b.valid["pos"].all()
        assert np.array_equal(b.events["pos"].numpy(), pos[row]) and np.array_equal(b.dense[..., 0].numpy(), npho[row])
        seen += row.tolist()
    assert sorted(seen) == list(range(90))
    nulls = t.set_column(2, "pos", pa.array([None] + [[1.0, 2.0, 3.0]] * 89, pa.list_(pa.float32(), 3)))
    b = collate(nulls, LoaderConfig(event_columns=["pos"]))
    assert not b.valid["pos"][0] and b.valid["pos"][1:].all() and np.isnan(b.events["pos"][0].numpy()).all()
    text = t.set_column(2, "pos", pa.array([["a", "b", "c"]] * 90, pa.list_(pa.string(), 3)))
    with pytest.raises(HepnbError, match="fixed-size list of numbers"):
        collate(text, LoaderConfig(event_columns=["pos"]))

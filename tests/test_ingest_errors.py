"""Bad input to `ingest`, `convert_to_root` and `validate_path`: a `HepnbError` that names the file and the
column/key, and nothing half-written afterwards."""
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
import uproot

from hepnb.core import HepnbError
from hepnb.dataset import write_dataset
from hepnb.detectors.atar.pioneer import to_pioneer_ml
from hepnb.rootio import convert_to_root, ingest, validate_path


def atar_events(n, seed=0):
    "A small valid atar.events table (the ATAR simulator)."
    from hepnb.detectors.atar.sim import simulate
    return simulate(n, seed=seed)


@pytest.fixture(scope="module")
def pioneer():
    "A valid PIONEER-layout table (60 events)."
    return to_pioneer_ml(atar_events(60, seed=11))


def fails(tmp_path, src, *must_name, **kw):
    "Ingest `src`, expect a HepnbError naming the file and every string in `must_name`, and no output at all."
    out = tmp_path / "out"
    before = set(os.listdir(tmp_path))
    with pytest.raises(HepnbError) as ei:
        ingest(src, out, **kw)
    msg = str(ei.value)
    assert str(src) in msg, msg
    for s in must_name:
        assert s in msg, (s, msg)
    assert not out.exists()
    assert set(os.listdir(tmp_path)) == before, "temporary output left behind"
    # validate_path reads the same way and must reject it too (unless the problem is a tree/schema option)
    if not kw:
        with pytest.raises(HepnbError):
            validate_path(src)
    return msg


def set_list_value(t: pa.Table, name: str, row: int, k: int, value) -> pa.Table:
    "A copy of `t` with element `k` of list column `name` in row `row` replaced."
    vals = t.column(name).to_pylist()
    vals[row][k] = value
    return t.set_column(t.column_names.index(name), name, pa.array(vals, t.schema.field(name).type))


def write_parquet(path, t, **kw):
    pq.write_table(t, path, **kw)
    return path


# ---- the file itself ----

def test_missing_file(tmp_path):
    fails(tmp_path, tmp_path / "nope.root", "no such file")


def test_empty_file(tmp_path):
    (tmp_path / "empty.parquet").write_bytes(b"")
    fails(tmp_path, tmp_path / "empty.parquet", "empty file")


def test_not_root_or_parquet(tmp_path):
    (tmp_path / "data.root").write_text("event_id,x\n1,2\n")
    fails(tmp_path, tmp_path / "data.root", "expected a ROOT file", "b'even'")


def test_truncated_parquet(tmp_path, pioneer):
    good = write_parquet(tmp_path / "good.parquet", pioneer, row_group_size=20)
    bad = tmp_path / "cut.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    fails(tmp_path, bad, "Parquet")


def write_root(path, n=4, per=20000):
    rng = np.random.default_rng(0)
    with uproot.recreate(path) as f:
        t = f.mktree("t", {"x": np.float64, "n": np.int32})
        for _ in range(n):
            t.extend({"x": rng.normal(size=per), "n": np.arange(per, dtype=np.int32)})
    return path


def test_truncated_root(tmp_path):
    good = write_root(tmp_path / "good.root")
    bad = tmp_path / "cut.root"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    fails(tmp_path, bad, "truncated")


def test_corrupt_root_fails_midway_and_leaves_nothing(tmp_path):
    "Damage late in the file: the first chunks are already written to shards when reading fails."
    good = write_root(tmp_path / "good.root")
    data = bytearray(good.read_bytes())
    at = len(data) * 3 // 4
    data[at: at + 4000] = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    bad = tmp_path / "damaged.root"
    bad.write_bytes(bytes(data))
    fails(tmp_path, bad, "[tree t]", "cannot read", step_size=5000, rows_per_file=5000)


# ---- trees ----

def test_tree_not_found_and_ambiguous(tmp_path):
    src = tmp_path / "two.root"
    with uproot.recreate(src) as f:
        f.mktree("hits", {"x": np.float32}).extend({"x": np.zeros(3, np.float32)})
        f.mktree("truth", {"y": np.float32}).extend({"y": np.zeros(3, np.float32)})
    msg = fails(tmp_path, src, "no TTree 'events'", "'hits'", "'truth'", tree="events")
    msg = fails(tmp_path, src, "expected one TTree, found 2", "'hits'", "'truth'", tree=None, schema=None)
    assert "choose one" in msg


def test_no_tree(tmp_path):
    src = tmp_path / "notree.root"
    with uproot.recreate(src) as f:
        f["note"] = "just a string"
    fails(tmp_path, src, "expected a TTree, found none", "note")


# ---- columns: missing, mistyped, mismatched lengths, NaN/Inf, duplicate keys ----

def test_missing_required_column(tmp_path, pioneer):
    src = write_parquet(tmp_path / "p.parquet", pioneer.drop_columns(["hits_edep"]))
    fails(tmp_path, src, "missing column 'hits_edep'", "atar.pioneer_ml", schema="atar.pioneer_ml")
    # without --schema it is not an error: a generic dataset, with a warning naming the closest schema
    with pytest.warns(UserWarning, match=r"atar\.pioneer_ml.*hits_edep"):
        ds = ingest(src, tmp_path / "generic")
    assert ds.manifest["schema"] is None
    # on the command line the warning is one line, with no source file or code line
    p = run_cli("ingest", src, "--out", tmp_path / "generic-cli", check=0)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hepnb: warning: ") and "hits_edep" in lines[0]


def test_mistyped_column(tmp_path, pioneer):
    i = pioneer.column_names.index("hits_time_group")
    bad = pioneer.set_column(i, "hits_time_group", pioneer.column(i).cast(pa.list_(pa.float32())))
    src = write_parquet(tmp_path / "p.parquet", bad)
    msg = fails(tmp_path, src, "[column hits_time_group]", "expected type")
    assert "float" in msg


def test_mistyped_column_in_root(tmp_path):
    "A TTree with the PIONEER columns, but hits_strip_type written as strings per event."
    src = tmp_path / "p.root"
    with uproot.recreate(src) as f:
        t = f.mktree("events", {"event_id": np.int64, "hits_coord": "var * float32", "hits_z": "var * float32",
                                "hits_edep": "var * float32", "hits_strip_type": "string",
                                "hits_time_group": "var * int16"})
        import awkward as ak
        one = ak.Array([[1.0, 2.0]] * 3)
        t.extend({"event_id": np.arange(3), "hits_coord": one, "hits_z": one, "hits_edep": one,
                  "hits_strip_type": ak.Array(["xy"] * 3), "hits_time_group": ak.Array([[0, 0]] * 3)})
    fails(tmp_path, src, "[tree events]", "[column hits_strip_type]", "expected type")


def test_list_lengths_differ_within_event(tmp_path, pioneer):
    vals = pioneer.column("hits_edep").to_pylist()
    vals[7] = vals[7][:-1]
    bad = pioneer.set_column(pioneer.column_names.index("hits_edep"), "hits_edep",
                             pa.array(vals, pioneer.schema.field("hits_edep").type))
    src = write_parquet(tmp_path / "p.parquet", bad)
    eid = pioneer.column("event_id")[7].as_py()
    fails(tmp_path, src, "[column hits_", "row 7", f"event_id {eid}")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_inf(tmp_path, pioneer, value):
    src = write_parquet(tmp_path / "p.parquet", set_list_value(pioneer, "hits_edep", 33, 0, value),
                        row_group_size=16)
    fails(tmp_path, src, "[column hits_edep]", "NaN/Inf", step_size=10)


def test_nan_in_root_tree(tmp_path):
    src = tmp_path / "p.root"
    import awkward as ak
    with uproot.recreate(src) as f:
        t = f.mktree("events", {"event_id": np.int64, "hits_coord": "var * float32", "hits_z": "var * float32",
                                "hits_edep": "var * float32", "hits_strip_type": "var * int8",
                                "hits_time_group": "var * int16"})
        one = ak.Array([[1.0, 2.0]] * 3)
        t.extend({"event_id": np.arange(3), "hits_coord": one, "hits_z": one,
                  "hits_edep": ak.Array([[1.0, 2.0], [np.nan, 1.0], [1.0, 1.0]]),
                  "hits_strip_type": ak.Array([[0, 1]] * 3), "hits_time_group": ak.Array([[0, 0]] * 3)})
    fails(tmp_path, src, "[tree events]", "[column hits_edep]", "NaN/Inf")


def test_duplicate_event_id_within_chunk(tmp_path, pioneer):
    ids = pioneer.column("event_id").to_numpy().copy()
    ids[5] = ids[4]
    src = write_parquet(tmp_path / "p.parquet", pioneer.set_column(0, "event_id", pa.array(ids)))
    fails(tmp_path, src, "[column event_id]", "duplicate", str(ids[4]))


def test_duplicate_event_id_across_chunks(tmp_path, pioneer):
    "The repeated key sits in different row groups and different chunks: only the whole-file check sees it."
    ids = pioneer.column("event_id").to_numpy().copy()
    ids[55] = ids[2]
    src = write_parquet(tmp_path / "p.parquet", pioneer.set_column(0, "event_id", pa.array(ids)), row_group_size=10)
    fails(tmp_path, src, "[column event_id]", "duplicate", str(ids[2]), step_size=10)


def test_duplicate_event_id_generic(tmp_path):
    "No schema, but an event_id column is still a key."
    src = write_parquet(tmp_path / "g.parquet", pa.table({"event_id": [1, 2, 2], "x": [0.1, 0.2, 0.3]}))
    fails(tmp_path, src, "[column event_id]", "duplicate")


# ---- the outputs ----

def test_failed_ingest_keeps_existing_output(tmp_path, pioneer):
    good = write_parquet(tmp_path / "good.parquet", pioneer)
    ds = ingest(good, tmp_path / "out")
    manifest = (ds.path / "manifest.json").read_text()
    bad = write_parquet(tmp_path / "bad.parquet", set_list_value(pioneer, "hits_edep", 1, 0, float("nan")))
    with pytest.raises(HepnbError, match="already exists"):
        ingest(bad, tmp_path / "out")
    with pytest.raises(HepnbError, match="NaN"):
        ingest(bad, tmp_path / "out", overwrite=True)
    assert (ds.path / "manifest.json").read_text() == manifest
    assert sorted(os.listdir(tmp_path)) == ["bad.parquet", "good.parquet", "out"]


def test_convert_refuses_unsupported_types_and_leaves_nothing(tmp_path):
    ds = write_dataset(tmp_path / "ds", pa.table({"event_id": pa.array([1, 2], pa.int64()),
                                                  "tags": pa.array([["a"], []], pa.list_(pa.string()))}))
    with pytest.raises(HepnbError, match=re.escape("[column tags]")):
        convert_to_root(ds, tmp_path / "x.root")
    with pytest.raises(HepnbError, match="branch name 'a__valid'"):
        ds2 = write_dataset(tmp_path / "ds2", pa.table({"a": pa.array([1.0, None]), "a__valid": pa.array([True, False])}))
        convert_to_root(ds2, tmp_path / "y.root")
    assert sorted(os.listdir(tmp_path)) == ["ds", "ds2"]


def test_validate_path_schema_mismatch(tmp_path, pioneer):
    src = write_parquet(tmp_path / "p.parquet", pioneer)
    with pytest.raises(HepnbError, match="missing column"):
        validate_path(src, schema="atar.events")
    assert "atar.pioneer_ml" in validate_path(src)

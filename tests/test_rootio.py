"""ROOT and foreign-Parquet I/O: generic TTree ingest, exact dataset -> ROOT -> dataset round trips,
PIONEER-layout Parquet ingest, and `validate_path`."""
import json

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import uproot

from hepnb.core import HepnbError, sha256_file
from hepnb.dataset import open_dataset, write_dataset
from hepnb.detectors.atar.pioneer import to_pioneer_ml
from hepnb.detectors.atar.schema import EVENTS, PIONEER_ML
from hepnb.rootio import ROOT_MANIFEST, convert_to_root, detect_schema, ingest, validate_path
from hepnb.schema import validate_table


def atar_events(n, seed=0):
    "A small valid atar.events table (the ATAR simulator, with pile-up and nullable muon columns)."
    from hepnb.detectors.atar.sim import simulate
    return simulate(n, seed=seed)


def write_generic_root(path, n_extend=2):
    "A TTree with flat int/float/bool, a jagged float and a string branch, written in several baskets."
    rng = np.random.default_rng(1)
    with uproot.recreate(path) as f:
        t = f.mktree("t", {"run": np.int32, "x": np.float64, "ok": np.bool_, "e": "var * float32", "label": "string"})
        for k in range(n_extend):
            n = 7
            counts = rng.integers(0, 4, n)
            t.extend({"run": np.arange(k * n, (k + 1) * n, dtype=np.int32), "x": rng.normal(size=n),
                      "ok": rng.random(n) < 0.5, "e": ak.unflatten(rng.random(counts.sum()).astype(np.float32), counts),
                      "label": ak.Array([f"ev{k}-{i}" * (i % 3) for i in range(n)])})
    return path


def test_generic_root_ingest_matches_uproot(tmp_path):
    src = write_generic_root(tmp_path / "generic.root")
    ds = ingest(src, tmp_path / "ds", step_size=5, rows_per_file=6)
    got = ds.read()
    ref = uproot.open(src)["t"].arrays()
    assert got.num_rows == len(ref) == 14 and len(ds.files) == 3
    assert got.column_names == list(ref.fields)            # branch names kept, counter branch included
    assert "ne" in got.column_names
    for name in ref.fields:
        assert got.column(name).to_pylist() == ref[name].tolist(), name
    types = {f.name: f.type for f in got.schema}
    assert types["run"] == pa.int32() and types["x"] == pa.float64() and types["ok"] == pa.bool_()
    assert types["e"] == pa.list_(pa.float32()) and types["label"] == pa.string()
    m = ds.manifest
    assert m["schema"] is None and m["detector"] == ""
    assert m["producer"]["name"] == "hepnb ingest" and m["producer"]["source_format"] == "root"
    assert m["producer"]["tree"] == "t" and m["producer"]["source_sha256"] == sha256_file(src)
    assert m["producer"]["source"].endswith("generic.root")


def test_tree_selection(tmp_path):
    src = tmp_path / "two.root"
    with uproot.recreate(src) as f:
        f.mktree("a", {"x": np.float32}).extend({"x": np.arange(3, dtype=np.float32)})
        f.mktree("b", {"y": np.int64}).extend({"y": np.arange(5)})
    ds = ingest(src, tmp_path / "b", tree="b")
    assert ds.read().column("y").to_pylist() == list(range(5))


def events_dataset(path, n=120, seed=4, **kw):
    t = atar_events(n, seed)
    assert t.column("muon_end_x").null_count > 0                # nullable float columns with nulls
    return write_dataset(path, t, schema=EVENTS, detector="atar", seed=seed,
                         producer={"name": "test", "parameters": {"n": n}}, **kw), t


def test_exact_round_trip_atar_events(tmp_path):
    ds, t = events_dataset(tmp_path / "ds", rows_per_file=50)
    assert ds.read().schema.field("hits_contrib_mc_event_id").type == pa.list_(pa.list_(pa.int16()))
    root = convert_to_root(ds, tmp_path / "ev.root", chunk_bytes=20_000)   # many small extends
    back = ingest(root, tmp_path / "back", step_size=17)                   # many chunks
    assert back.read().equals(ds.read())
    assert back.read().schema == ds.read().schema
    m, m0 = back.manifest, ds.manifest
    assert m["schema"] == m0["schema"] == {"name": "atar.events", "version": 1}
    assert m["columns"] == m0["columns"] and m["detector"] == "atar" and m["seed"] == 4
    src = m["producer"]["source_manifest"]
    assert src["producer"] == m0["producer"] and src["seed"] == 4 and src["detector"] == "atar"
    assert m["producer"]["source_sha256"] == sha256_file(root)
    # what ROOT users see: plain branches, nulls as 0 plus a validity branch, list<list> as two jagged branches
    with uproot.open(root) as f:
        tr = f["events"]
        assert tr.num_entries == len(t)
        assert tr["hits_edep"].array().tolist() == t.column("hits_edep").to_pylist()
        mu = t.column("muon_end_x").to_pylist()
        assert tr["muon_end_x__valid"].array().tolist() == [v is not None for v in mu]
        assert tr["muon_end_x"].array().tolist() == [0.0 if v is None else v for v in mu]
        contrib = t.column("hits_contrib_mc_event_id").to_pylist()
        assert tr["hits_contrib_mc_event_id__n"].array().tolist() == [[len(h) for h in ev] for ev in contrib]
        assert tr["hits_contrib_mc_event_id__flat"].array().tolist() == [[x for h in ev for x in h] for ev in contrib]
        assert "hits_edep__valid" not in tr.keys()                    # no nulls there, no validity branch
        meta = json.loads(str(f[ROOT_MANIFEST]))
        assert meta["dataset"]["schema"]["name"] == "atar.events" and "files" not in meta["dataset"]


def test_exact_round_trip_nulls_at_every_level(tmp_path):
    t = pa.table({
        "event_id": pa.array([10, 11, 12, 13, 14], pa.int64()),
        "e": pa.array([1.5, None, float("inf"), -1.0, None], pa.float32()),   # generic: Inf is data, kept
        "d": pa.array([None, 2.0, 3.0, 4.0, 5.0], pa.float64()),
        "name": pa.array(["a", "", None, "dd", "é"], pa.large_string()),
        "flags": pa.array([[True, None], None, [], [False], [None]], pa.list_(pa.bool_())),
        "u": pa.array([[1, 2], [], [3], [4], [2**32 - 1]], pa.large_list(pa.uint32())),
        "c": pa.array([[[1, 2], [3]], [[], None], None, [[None, 7]], []], pa.list_(pa.list_(pa.int16()))),
        "cc": pa.array([[[1.0]], [], [[2.0, 3.0], []], [], [[4.0]]], pa.list_(pa.list_(pa.float32()))),
    })
    ds = write_dataset(tmp_path / "ds", t, rows_per_file=2)
    root = convert_to_root(ds, tmp_path / "x.root", tree="tt")
    back = ingest(root, tmp_path / "back", step_size=2)
    got = back.read()
    assert got.equals(ds.read()) and got.schema == ds.read().schema
    assert got.column("c").to_pylist() == t.column("c").to_pylist()
    assert got.column("e").to_pylist()[2] == float("inf")
    with uproot.open(root) as f:
        keys = set(f["tt"].keys())
    assert {"c__n", "c__flat", "c__valid", "c__ivalid", "c__lvalid", "cc__n", "cc__flat"} <= keys
    assert not {"cc__valid", "cc__ivalid", "cc__lvalid", "u__valid"} & keys


def test_convert_is_atomic_and_respects_overwrite(tmp_path):
    ds = write_dataset(tmp_path / "ds", pa.table({"event_id": pa.array([1, 2], pa.int64())}))
    out = convert_to_root(ds, tmp_path / "o.root")
    before = out.read_bytes()
    with pytest.raises(Exception, match="already exists"):
        convert_to_root(ds, out)
    assert out.read_bytes() == before
    convert_to_root(str(ds.path), out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "o.root"]


def reference_pioneer(t):
    "Per-event Python reference for to_pioneer_ml's group targets."
    out = {k: [] for k in ("pion_stop_x", "positron_py")}
    for ev in t.to_pylist():
        groups = range(len(ev["group_pion_in"]))
        hits = list(zip(ev["hits_time_group"], ev["hits_mc_event_id"], ev["hits_particle_mask"]))
        pion = {g for g, mc, m in hits if mc == 0 and m & 1}
        pos = {g for g, mc, m in hits if mc == 0 and m & 4}
        out["pion_stop_x"].append([ev["pion_stop_x"] if ev["group_pion_in"][g] and g in pion else None for g in groups])
        out["positron_py"].append([ev["positron_py"] if ev["group_mip_in"][g] and g in pos else None for g in groups])
    return out


def test_to_pioneer_ml_matches_reference():
    t = atar_events(150, seed=9)
    p = to_pioneer_ml(t)
    validate_table(p, PIONEER_ML)
    assert detect_schema(p.schema) is PIONEER_ML
    ref = reference_pioneer(t)
    assert p.column("pion_stop_x").to_pylist() == ref["pion_stop_x"]
    assert p.column("positron_py").to_pylist() == ref["positron_py"]
    on = pc.list_flatten(p.column("positron_py")).is_valid().to_numpy(zero_copy_only=False)
    mip = pc.list_flatten(t.column("group_mip_in")).to_numpy(zero_copy_only=False)
    assert 0 < on.sum() < mip.sum()                    # pile-up positron groups stay null
    assert p.column("hits_edep").equals(t.column("hits_edep"))
    assert "hits_time" not in to_pioneer_ml(t, drop_time=True).column_names


def test_pioneer_parquet_ingest(tmp_path):
    p = to_pioneer_ml(atar_events(200, seed=2), drop_time=True)
    src = tmp_path / "pioneer.parquet"
    pq.write_table(p, src, row_group_size=30)
    ds = ingest(src, tmp_path / "ds", step_size=25, rows_per_file=80)
    assert ds.read().equals(p) and len(ds.files) == 3
    m = ds.manifest
    assert m["schema"] == {"name": "atar.pioneer_ml", "version": 1} and m["detector"] == "atar"
    assert m["producer"]["name"] == "hepnb ingest" and m["producer"]["source_sha256"] == sha256_file(src)
    assert m["producer"]["source"].endswith("pioneer.parquet") and m["producer"]["source_format"] == "parquet"
    assert "hits_time" not in ds.columns


def test_pioneer_parquet_with_foreign_widths(tmp_path):
    "Other writers use float64 and 64-bit offsets: same kinds, so the layout is still recognised."
    p = to_pioneer_ml(atar_events(60, seed=5))
    wide = pa.schema([pa.field(f.name, pa.large_list(pa.float64()) if f.type == pa.list_(pa.float32()) else f.type)
                      for f in p.schema])
    src = tmp_path / "wide.parquet"
    pq.write_table(p.cast(wide), src)
    ds = ingest(src, tmp_path / "ds")
    assert ds.manifest["schema"]["name"] == "atar.pioneer_ml"
    got = ds.read()
    assert got.column("hits_edep").type == pa.list_(pa.float32())
    assert got.column("pion_stop_x").to_pylist() == p.column("pion_stop_x").to_pylist()


def test_parquet_with_extra_columns_records_them(tmp_path):
    p = to_pioneer_ml(atar_events(30, seed=6))
    src = tmp_path / "x.parquet"
    pq.write_table(p.append_column("my_score", pa.array(np.ones(p.num_rows))), src)
    ds = ingest(src, tmp_path / "ds")
    assert "my_score" not in ds.columns and ds.manifest["producer"]["dropped_columns"] == ["my_score"]


def test_validate_path_all_kinds(tmp_path):
    ds, _ = events_dataset(tmp_path / "ds", n=40)
    assert "40 rows" in validate_path(ds.path) and "atar.events" in validate_path(ds.path)
    root = convert_to_root(ds, tmp_path / "ev.root")
    s = validate_path(root)
    assert "hepnb ROOT tree" in s and "40 rows" in s and "atar.events" in s
    pq.write_table(to_pioneer_ml(ds.read()), tmp_path / "p.parquet", row_group_size=15)
    s = validate_path(tmp_path / "p.parquet")
    assert "40 rows" in s and "3 row group(s)" in s and "atar.pioneer_ml" in s
    g = validate_path(write_generic_root(tmp_path / "g.root"))
    assert "14 rows" in g and "generic" in g
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "ev.root", "g.root", "p.parquet"]


def test_fixed_size_arrays_round_trip_bit_identical(tmp_path):
    "A 4760-channel array per event is one `npho[4760]/F` branch, read back bit-identical; a foreign one ingests too."
    import numpy as np
    import pyarrow as pa
    import uproot
    from hepnb.core import output_lock
    from hepnb.dataset import write_dataset
    from hepnb.rootio import convert_to_root, ingest
    rng = np.random.default_rng(3)
    npho = rng.random((20, 4760), np.float32)
    t = pa.table({"event_id": np.arange(20, dtype=np.int64),
                  "npho": pa.FixedSizeListArray.from_arrays(pa.array(npho.ravel()), 4760),
                  "uvwTruth": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(60, np.float32)), 3)})
    root = convert_to_root(write_dataset(tmp_path / "ds", t), tmp_path / "x.root")
    branch = uproot.open(root)["events"]["npho"]
    assert branch.title == "npho[4760]/F"
    assert ingest(root, tmp_path / "back").read().equals(t)
    with uproot.recreate(tmp_path / "foreign.root") as f:                 # as the xec-ml-wl preprocessing writes it
        f["tree"] = {"run": np.ones(20, np.int32), "npho": npho}
    back = ingest(tmp_path / "foreign.root", tmp_path / "foreign").read()
    assert back.schema.field("npho").type == pa.list_(pa.float32(), 4760)
    assert np.array_equal(np.stack(back.column("npho").to_numpy(zero_copy_only=False)), npho)
    with output_lock(tmp_path / "busy.root"):                             # one writer per output file
        with pytest.raises(HepnbError, match="another writer"):
            convert_to_root(tmp_path / "ds", tmp_path / "busy.root")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back", "ds", "foreign", "foreign.root", "x.root"]

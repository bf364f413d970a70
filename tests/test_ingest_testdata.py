"""`ingest` on files of the scikit-hep test-data set: each column equal to what uproot reads, or a one-line
refusal that starts with the file and names the branch. (benchmarks/ingest_testdata.py runs the whole set.)"""
import importlib.util
import tempfile
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import skhep_testdata      # the dev extra; these tests must fail, not skip, without it
import uproot

import hepnb.rootio as rootio
from hepnb.core import HepnbError
from hepnb.dataset import open_dataset
from hepnb.rootio import ingest, validate_path
from conftest import run_cli


def data(name):
    return skhep_testdata.data_path(name)


def _benchmark():
    "benchmarks/ingest_testdata.py as a module: the tests compare with uproot's read exactly as it does."
    spec = importlib.util.spec_from_file_location(
        "ingest_testdata", Path(__file__).resolve().parents[1] / "benchmarks" / "ingest_testdata.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _benchmark()
plain = BENCH.plain       # a to_list value where equal data compares equal: NaN == NaN, an awkward tuple == its struct


def assert_as_uproot_reads(src, tree, ds, expect_columns=None):
    "Every column of `ds` equals uproot's read of it; the columns are uproot's (or `expect_columns`)."
    t = uproot.open(src)[tree]
    want = t.arrays(library="ak")
    assert ds.columns == (expect_columns if expect_columns is not None else list(want.fields))
    got = ds.read()
    assert got.num_rows == len(want) == ds.num_rows
    for name in ds.columns:
        ref = want[name] if name in want.fields else t[name].array(library="ak")
        assert plain(got.column(name).to_pylist()) == plain(ak.to_list(ref)), name
    return got


def refusal(tmp_path, src, *must_name, **kw):
    "Ingest `src`, expect a one-line HepnbError that starts with the file and names `must_name`; nothing written."
    out = tmp_path / "out"
    with pytest.raises(HepnbError) as ei:
        ingest(src, out, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(src)), msg
    for s in must_name:
        assert s in msg, (s, msg)
    assert not out.exists()
    return msg


def test_tlorentzvector_members_all_kept(tmp_path):
    "The issue: every fP/fX, fP/fY, fP/fZ of the std::vector<TLorentzVector> branches came back null."
    src = data("uproot-HZZ-objects.root")
    ds = ingest(src, tmp_path / "hzz", step_size="100 kB")           # several chunks
    got = assert_as_uproot_reads(src, "events", ds)
    xyz = pa.struct([("fX", pa.float64()), ("fY", pa.float64()), ("fZ", pa.float64())])
    for name in ("jetp4", "muonp4", "electronp4", "photonp4"):
        assert got.schema.field(name).type == pa.list_(pa.struct([("fP", xyz), ("fE", pa.float64())])), name
        members = pc.list_flatten(got.column(name))
        assert members.null_count == 0 and pc.struct_field(members, [0, 0]).null_count == 0
    assert got.column("MET").type == pa.struct([("fX", pa.float64()), ("fY", pa.float64())])


def test_issue57_lorentz_vectors(tmp_path):
    src = data("uproot-issue57.root")
    assert_as_uproot_reads(src, "outtree", ingest(src, tmp_path / "ds"))


def test_tntuple(tmp_path):
    src = data("uproot-hepdata-example.root")                        # 'ntuple' is a TNtuple, the only tree
    ds = ingest(src, tmp_path / "ds")
    assert ds.manifest["producer"]["tree"] == "ntuple"
    assert_as_uproot_reads(src, "ntuple", ds, expect_columns=["px", "py", "pz", "random", "i"])


@pytest.mark.parametrize("name, tree", [("uproot-stl_containers.root", "tree"), ("uproot-vectorVectorDouble.root", "t"),
                                        ("uproot-leaflist.root", "tree"), ("uproot-small-evnt-tree-fullsplit.root", "tree")])
def test_stl_containers_and_leaf_lists(tmp_path, name, tree):
    "Nested STL containers (vector<vector<...>>, set, map, strings), a leaf list, a fully split object."
    src = data(name)
    assert_as_uproot_reads(src, tree, ingest(src, tmp_path / "ds", step_size=2))


def test_branches_with_the_same_name_keep_their_paths(tmp_path):
    "Two split objects have an 'fChannelName' each; tree.arrays() keeps one, ingest keeps both under their paths."
    src = data("uproot-issue126a.root")
    ds = ingest(src, tmp_path / "ds", columns=["BLM1", "COL"])
    assert "BLM1/fChannelName" in ds.columns and "COL/fChannelName" in ds.columns
    t = uproot.open(src)["ChannelSet"]
    got = ds.read()
    for name in ds.columns:
        assert plain(got.column(name).to_pylist()) == plain(t[name].array(library="ak").tolist()), name


def test_rntuple_file_ingested_or_refused_in_one_line(tmp_path):
    src = data("uproot-ntpl001_staff.root")
    try:
        ds = ingest(src, tmp_path / "ds")
    except HepnbError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(f"{src} [RNTuple Staff]"), msg
        assert len(msg) < len(str(src)) + 300, msg
    else:
        assert_as_uproot_reads(src, "Staff", ds)


def test_rntuple_fields(tmp_path):
    "An RNTuple written here: ingested equal; a union of types refused naming its field, ingestible without it."
    src = tmp_path / "rn.root"
    with uproot.recreate(src) as f:
        f.mkrntuple("ntpl", ak.Array({"x": np.arange(5.0), "v": [[1, 2], [], [3], [4, 5, 6], []],
                                      "rec": [{"a": i, "b": i / 2} for i in range(5)], "u": [1, "a", 2.5, 3, "b"]}))
    refusal(tmp_path, src, "[RNTuple ntpl] [field u]", "union")
    ds = ingest(src, tmp_path / "ds", step_size=2, exclude=["u"])
    want = uproot.open(src)["ntpl"].arrays()
    got = ds.read()
    assert ds.columns == ["x", "v", "rec"] and got.num_rows == 5
    for name in ds.columns:
        assert plain(got.column(name).to_pylist()) == plain(ak.to_list(want[name])), name


def test_columns_and_exclude_wildcards(tmp_path):
    src = data("uproot-HZZ-objects.root")
    ds = ingest(src, tmp_path / "ds", columns=["*p4", "MC_*"], exclude=["photon*", "MC_lepton*"])
    expect = ["jetp4", "muonp4", "electronp4", "MC_bquarkhadronic", "MC_bquarkleptonic", "MC_wdecayb", "MC_wdecaybbar",
              "MC_neutrino"]
    assert_as_uproot_reads(src, "events", ds, expect_columns=expect)
    assert ds.manifest["producer"]["selection"] == {"columns": ["*p4", "MC_*"], "exclude": ["photon*", "MC_lepton*"]}
    msg = refusal(tmp_path, src, "'jetp5'", "close names", "jetp4", columns=["jetp5"])
    assert "columns pattern" in msg
    refusal(tmp_path, src, "exclude pattern 'tau*'", exclude=["tau*"])
    refusal(tmp_path, src, "no branch left", columns=["jet*"], exclude=["jet*"])
    assert "1 columns" in validate_path(src, columns=["MET"])


def test_cli_columns_and_one_line_refusal(tmp_path):
    src = data("uproot-HZZ-objects.root")
    run_cli("ingest", src, "--out", tmp_path / "a", "--columns", "muon*,MET", "--exclude", "muoniso", check=0)
    assert open_dataset(tmp_path / "a").columns == ["muonp4", "muonq", "MET"]
    p = run_cli("ingest", data("uproot-ntpl001_staff.root"), "--out", tmp_path / "b", check=2)
    assert p.stderr.count("\n") == 1 and p.stderr.startswith(f"hepnb: error: {data('uproot-ntpl001_staff.root')}"), p.stderr


def test_uninterpretable_branch_refused_by_name(tmp_path):
    "tree.arrays() leaves out a branch it cannot interpret without a word; ingest names it, and takes --exclude."
    src = data("uproot-issue371.root")
    refusal(tmp_path, src, "[tree Header] [branch Header./Header.TObject]", "no interpretation", "--exclude", tree="Header")
    ds = ingest(src, tmp_path / "ds", tree="Header", exclude=["*.TObject"])
    assert_as_uproot_reads(src, "Header", ds)


def test_unreadable_branch_types_refused_by_name(tmp_path):
    "Pointers uproot will not turn into arrays: refused before reading, every such branch counted."
    refusal(tmp_path, data("uproot-issue485.root"), "[tree MCParticle] [branch detector1]", "arbitrary pointer",
            "1 more like it", tree="MCParticle")


def test_chunk_with_another_layout_is_refused_not_cast(tmp_path, monkeypatch):
    "A later chunk of jetp4 that lacks fP: a cast would fill fP with nulls; ingest refuses the chunk instead."
    read = rootio._read_branch
    def without_fp(c, start, stop, where):
        arr = read(c, start, stop, where)
        if c.name != "jetp4" or start == 0:
            return arr
        energies = pc.struct_field(arr.flatten(), [1])
        only_e = pa.StructArray.from_arrays([energies], names=["fE"])
        return pa.ListArray.from_arrays(arr.offsets, only_e)
    monkeypatch.setattr(rootio, "_read_branch", without_fp)
    src = data("uproot-HZZ-objects.root")
    msg = refusal(tmp_path, src, "[tree events] [branch jetp4]", "another layout than the first chunk",
                  "['fP'] missing", "refusing to cast", step_size=1000)
    assert "entries 1000-" in msg, msg


def test_benchmark_script_counts_no_failures():
    "The benchmark's own classification, on two files: ingested-equal and refused, nothing else."
    bench = BENCH
    with tempfile.TemporaryDirectory() as tmp:
        assert bench.run_one(Path(data("uproot-HZZ-objects.root")), "events", Path(tmp), 120)[0] == "ingested-equal"
        result, _, msg = bench.run_one(Path(data("uproot-issue485.root")), "MCTrack", Path(tmp), 120)
        assert result == "refused" and "[branch global]" in msg, (result, msg)

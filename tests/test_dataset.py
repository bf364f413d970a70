"""Parquet datasets: manifest, atomic writes, and clear errors for damaged data."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hepnb.core import HepnbError
from hepnb.dataset import open_dataset, validate_dataset, write_dataset
from hepnb.detectors.atar.schema import EVENTS
from hepnb.detectors.atar.sim import simulate


def copy_dataset(ds, dst):
    import shutil
    shutil.copytree(ds.path, dst)
    return dst


def test_manifest_contents(small_atar):
    m = small_atar.manifest
    assert m["format"] == "hepnb.dataset" and m["kind"] == "base" and m["rows"] == 3000
    assert [f["rows"] for f in m["files"]] == [1000, 1000, 1000]
    assert all(len(f["sha256"]) == 64 for f in m["files"])
    assert [c["name"] for c in m["columns"]] == EVENTS.names
    assert pq.ParquetFile(small_atar.files[0]).metadata.num_row_groups == 2
    validate_dataset(small_atar.path)


def test_killed_writer_leaves_no_dataset(tmp_path):
    out = tmp_path / "big"
    code = ("from hepnb.detectors.atar.sim import simulate_dataset\n"
            f"simulate_dataset({str(out)!r}, 2_000_000, seed=1, rows_per_file=8192)\n")
    p = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:   # wait until shards are being written
            tmp = [d for d in tmp_path.iterdir() if d.name.startswith(".big.tmp-")]
            if tmp and len(list(tmp[0].glob("*.parquet"))) >= 2: break
            time.sleep(0.1)
        else:
            pytest.fail("writer did not start")
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait()
    assert not out.exists()
    with pytest.raises(HepnbError, match="no manifest.json|expected a dataset folder"):
        open_dataset(out)


@pytest.mark.parametrize("damage,needle", [
    (lambda d: (d / "manifest.json").write_text("{not json"), "corrupt manifest"),
    (lambda d: (d / "manifest.json").write_text(json.dumps({"format": "other"})), "expected 'format'"),
    (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
    (lambda d: (d / "part-00001.parquet").unlink(), "part-00001.parquet: shard listed in manifest.json is missing"),
    (lambda d: (d / "part-00001.parquet").write_bytes((d / "part-00001.parquet").read_bytes()[:5000]), "part-00001.parquet: not a readable Parquet file"),
    (lambda d: (d / "part-00002.parquet").write_bytes(b""), "part-00002.parquet"),
])
def test_damaged_dataset_errors(small_atar, tmp_path, damage, needle):
    d = copy_dataset(small_atar, tmp_path / "d")
    damage(d)
    with pytest.raises(HepnbError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        validate_dataset(d)


def test_changed_shard_fails_checksum(small_atar, tmp_path):
    d = copy_dataset(small_atar, tmp_path / "d")
    t = pq.read_table(d / "part-00000.parquet")
    pq.write_table(t, d / "part-00000.parquet", compression="snappy")   # same rows, different bytes
    open_dataset(d)                                                      # footers fine
    with pytest.raises(HepnbError, match="part-00000.parquet: checksum differs"):
        validate_dataset(d)


def test_duplicate_event_ids_across_shards(tmp_path, small_atar):
    t = simulate(200, seed=1)
    with pytest.raises(HepnbError, match=r"duplicate event_id values across written tables, e.g. \[0, 1, 2\]"):
        write_dataset(tmp_path / "dup", [t, t], schema=EVENTS, rows_per_file=200)
    assert not (tmp_path / "dup").exists()
    # a dataset whose shards were assembled by hand is caught by validation
    import shutil
    d = tmp_path / "hand"
    shutil.copytree(small_atar.path, d)
    m = json.loads((d / "manifest.json").read_text())
    shutil.copy(d / "part-00000.parquet", d / "part-00001.parquet")
    m["files"][1]["sha256"] = m["files"][0]["sha256"]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(HepnbError, match="duplicate event_id across shards"):
        validate_dataset(d)


@pytest.mark.parametrize("mutate,needle", [
    (lambda t: t.drop_columns("hits_edep"), "missing column 'hits_edep'"),
    (lambda t: t.set_column(t.schema.get_field_index("hits_edep"), "hits_edep", t["hits_edep"].cast(pa.list_(pa.float64()))),
     "[column hits_edep]: expected type list<item: float>, found list<item: double>"),
    (lambda t: t.set_column(t.schema.get_field_index("hits_time"), "hits_time",
                            pa.array([x[:-1] if x else x for x in t["hits_time"].to_pylist()], pa.list_(pa.float32()))),
     "[column hits_time]: list length"),
    (lambda t: t.set_column(t.schema.get_field_index("pion_stop_z"), "pion_stop_z",
                            pa.array(np.r_[np.nan, t["pion_stop_z"].to_numpy()[1:]], pa.float32())), "[column pion_stop_z]: 1 NaN/Inf"),
    (lambda t: t.set_column(0, "event_id", pa.array(np.zeros(t.num_rows, np.int64))), "duplicate event_id"),
])
def test_bad_tables_are_refused_and_nothing_is_written(tmp_path, mutate, needle):
    t = mutate(simulate(100, seed=2))
    with pytest.raises(HepnbError) as e:
        write_dataset(tmp_path / "out", t, schema=EVENTS)
    assert needle in str(e.value)
    assert list(tmp_path.iterdir()) == []

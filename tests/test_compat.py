"""Files from the code bases hepnb works beside are read as they are: PIONEER ML's integer group flags, and hepnb's
own prediction datasets validate."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hepnb.core import HepnbError
from hepnb.detectors.atar.pioneer import to_pioneer_ml
from hepnb.detectors.atar.sim import simulate
from hepnb.rootio import ingest, validate_path

FLAGS = ("group_pion_in", "group_muon_in", "group_mip_in")


@pytest.fixture(scope="module")
def pioneer():
    return to_pioneer_ml(simulate(80, seed=5))


def with_int_flags(t: pa.Table) -> pa.Table:
    "PIONEER ML's layout: the group flags as int32 0/1 lists."
    for name in FLAGS:
        t = t.set_column(t.column_names.index(name), name, t.column(name).cast(pa.list_(pa.int32())))
    return t


def test_integer_group_flags_are_read_as_booleans(tmp_path, pioneer):
    src = tmp_path / "flags.parquet"
    pq.write_table(with_int_flags(pioneer), src)
    ds = ingest(src, tmp_path / "ds", schema="atar.pioneer_ml")
    got = ds.read(list(FLAGS))
    for name in FLAGS:
        assert got.schema.field(name).type == pa.list_(pa.bool_())
        assert got.column(name).to_pylist() == pioneer.column(name).to_pylist()


def test_a_flag_that_is_neither_0_nor_1_is_refused(tmp_path, pioneer):
    t = with_int_flags(pioneer)
    vals = t.column("group_muon_in").to_pylist()
    row = next(i for i, v in enumerate(vals) if v)
    vals[row][0] = 2
    t = t.set_column(t.column_names.index("group_muon_in"), "group_muon_in", pa.array(vals, pa.list_(pa.int32())))
    pq.write_table(t, tmp_path / "bad.parquet")
    with pytest.raises(HepnbError, match=r"\[column group_muon_in\]: expected true/false flags .* e\.g\. 2"):
        ingest(tmp_path / "bad.parquet", tmp_path / "ds", schema="atar.pioneer_ml")
    assert not (tmp_path / "ds").exists()


def test_prediction_datasets_validate(tmp_path, small_atar):
    from hepnb.detectors.atar.stages import CLASSICAL
    from hepnb.stage import run_stage
    out = run_stage(CLASSICAL["atar.group_classifier"](), small_atar, tmp_path / "groups")
    summary = validate_path(out.path)
    assert "derived dataset" in summary and "schema stage:atar.group_classifier" in summary and "checksums: ok" in summary

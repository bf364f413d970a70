import pyarrow as pa
from hepnb.schema import Column, Level, Schema, register_schema

N_SENSORS = 16
EVENTS = register_schema(Schema("toycal.events", 1, levels=(Level("sensor", size=N_SENSORS),), columns=(
    Column("event_id", "event", pa.int64()),
    Column("energy", "event", pa.float32(), "GeV", "true shower energy"),
    Column("position", "event", pa.float32(), "sensor pitch", "true shower centre along the row"),
    Column("npho", "sensor", pa.float32(), "photons", "photons seen by each sensor"),
    Column("hits_x", "hit", pa.float32(), "sensor pitch", "position of each hit"),
    Column("edge_src", "edge", pa.int32(), index_of="hit"),
    Column("edge_dst", "edge", pa.int32(), index_of="hit"),
    Column("edge_true", "edge", pa.bool_(), doc="both hits from the shower"),
)))

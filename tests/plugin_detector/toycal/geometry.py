"""The toy calorimeter's sensors: 16 in a row along x, 1 cm apart, facing +z."""
import numpy as np
import polars as pl
from .schema import N_SENSORS


def sensor_table() -> pl.DataFrame:
    x = np.arange(N_SENSORS, dtype=float)
    zero = np.zeros(N_SENSORS)
    return pl.DataFrame({"sensor_id": np.arange(N_SENSORS, dtype=np.int32), "face": ["row"] * N_SENSORS,
                         "x": x, "y": zero, "z": zero, "dx": zero, "dy": zero, "dz": zero + 1})

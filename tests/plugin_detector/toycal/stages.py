import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hepnb.schema import Column
from hepnb.stage import StageImpl, StageSpec
from .sim import SimConfig

ENERGY = StageSpec("toycal.energy", inputs=("npho",), outputs=(Column("pred_energy", "event", pa.float32(), "GeV"),))


class PhotonSum(StageImpl):
    "The classical energy: the photons seen, over the light yield (what leaks past the row edge is lost)."
    spec, kind, name = ENERGY, "classical", "photon_sum"

    def predict(self, batch: pa.Table) -> pa.Table:
        npho = np.stack(batch.column("npho").to_numpy(zero_copy_only=False))
        return pa.table({"pred_energy": pa.array((npho.sum(1) / SimConfig().light_yield).astype(np.float32))})


CLASSICAL = {"toycal.energy": PhotonSum}

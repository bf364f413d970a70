"""The toy calorimeter's fast simulation: a Gaussian light profile around the shower centre, Poisson photons."""
import dataclasses
import numpy as np
import pyarrow as pa
from hepnb.core import HepnbError
from hepnb.dataset import DatasetWriter, open_dataset
from .schema import EVENTS, N_SENSORS


@dataclasses.dataclass(frozen=True)
class SimConfig:
    energy_min: float = 1.0           # GeV
    energy_max: float = 10.0          # GeV
    light_yield: float = 40.0         # photons per GeV
    spread: float = 1.5               # sensor pitches
    noise_hits: int = 3

    def __post_init__(self):
        if not 0 < self.energy_min < self.energy_max:
            raise HepnbError(f"expected 0 < energy_min < energy_max, found {self.energy_min}, {self.energy_max}",
                             where="--energy-min (energy_min)")


PRESETS = {"low": {"energy_min": 0.5, "energy_max": 2.0}, "high": {"energy_min": 10.0, "energy_max": 50.0}}


def simulate(n: int, seed: int, config: SimConfig, first: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    energy = rng.uniform(config.energy_min, config.energy_max, n)
    centre = rng.uniform(3, N_SENSORS - 3, n)
    x = np.arange(N_SENSORS)
    profile = np.exp(-0.5 * ((x[None] - centre[:, None]) / config.spread) ** 2)
    profile /= profile.sum(1, keepdims=True)
    npho = rng.poisson(config.light_yield * energy[:, None] * profile).astype(np.float32)
    hits, src, dst, true = [], [], [], []
    for i in range(n):
        shower = centre[i] + rng.normal(0, 0.5, rng.integers(2, 6))
        noise = rng.uniform(0, N_SENSORS, config.noise_hits)
        h = np.concatenate([shower, noise]).astype(np.float32)
        a, b = np.triu_indices(len(h), 1)
        hits.append(h); src.append(a.astype(np.int32)); dst.append(b.astype(np.int32))
        true.append((a < len(shower)) & (b < len(shower)))
    return pa.table({
        "event_id": pa.array(np.arange(first, first + n), pa.int64()),
        "energy": pa.array(energy.astype(np.float32)), "position": pa.array(centre.astype(np.float32)),
        "npho": pa.FixedSizeListArray.from_arrays(pa.array(npho.ravel()), N_SENSORS),
        "hits_x": pa.array(hits, pa.list_(pa.float32())), "edge_src": pa.array(src, pa.list_(pa.int32())),
        "edge_dst": pa.array(dst, pa.list_(pa.int32())), "edge_true": pa.array(true, pa.list_(pa.bool_()))})


def simulate_dataset(out, n_events: int, *, seed: int = 0, config: SimConfig | None = None, rows_per_file: int = 100_000,
                     overwrite: bool = False, show_progress: bool = False):
    config = config or SimConfig()
    with DatasetWriter(out, schema=EVENTS, detector="toycal", seed=seed, overwrite=overwrite, rows_per_file=rows_per_file,
                       producer={"name": "toycal.sim", "parameters": dataclasses.asdict(config)}) as w:
        for first in range(0, n_events, 1000):
            w.write(simulate(min(1000, n_events - first), seed * 1000 + first, config, first))
    return open_dataset(out)

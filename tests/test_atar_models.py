"""ATAR models: ONNX parity of every task's network, padding invariance, and the ML stage contract."""
import pytest
import torch

from hepnb.detectors.atar.models import GROUP_TASKS, TASKS, AtarModel, AtarModelConfig, forward, loader_config
from hepnb.detectors.atar.sim import simulate
from hepnb.loader import collate
from hepnb.train import export_onnx, onnx_parity


class Dense(torch.nn.Module):
    def __init__(self, m, n_groups):
        super().__init__(); self.m, self.n_groups = m, n_groups

    def forward(self, x, mask, *group):
        return self.m.dense(x, mask, *group, n_groups=self.n_groups)


@pytest.fixture(scope="module")
def table():
    return simulate(48, seed=4)


@pytest.mark.parametrize("task", TASKS)
def test_onnx_parity(task, table, tmp_path):
    torch.manual_seed(0)
    m = AtarModel(AtarModelConfig(task=task, d_model=16, n_heads=2, n_layers=1)).eval()
    b = collate(table.slice(0, 6), loader_config(task))
    group = (b.hit_targets["hits_time_group"],) if task in GROUP_TASKS else ()
    n_groups = int(b.hit_targets["hits_time_group"].max()) + 1 if task in GROUP_TASKS else 1
    net = Dense(m, n_groups)
    path = export_onnx(net, (b.x, b.mask, *group), tmp_path / f"{task}.onnx")
    assert onnx_parity(net, path, (b.x, b.mask, *group), atol=1e-4) < 1e-4


@pytest.mark.parametrize("task", TASKS)
def test_bucketing_and_padding_do_not_change_predictions(task, table):
    "An event's prediction does not depend on the other events of its batch."
    torch.manual_seed(0)
    m = AtarModel(AtarModelConfig(task=task, d_model=16, n_heads=2, n_layers=1)).eval()
    cfg = loader_config(task)
    with torch.no_grad():
        big = forward(m, collate(table, cfg))
        for i in (0, 7, 30):
            one = forward(m, collate(table.slice(i, 1), cfg))[0]
            own = big[i][tuple(slice(0, n) for n in one.shape)]   # per group / pair / hit: the event's own entries
            assert own.shape == one.shape and torch.allclose(own, one, atol=1e-5)

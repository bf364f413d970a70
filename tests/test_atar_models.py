"""ATAR models: ONNX parity of every task's network, padding invariance, and the ML stage contract."""
import pytest
import torch

from hepnb.detectors.atar.models import GROUP_TASKS, TASKS, AtarModel, AtarModelConfig, forward, loader_config, onnx_inputs
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
    "Exported with named dynamic axes (events, hits): ONNX Runtime agrees on a batch of another size too."
    torch.manual_seed(0)
    m = AtarModel(AtarModelConfig(task=task, d_model=16, n_heads=2, n_layers=1)).eval()
    b, other = collate(table.slice(0, 6), loader_config(task)), collate(table.slice(6, 19), loader_config(task))
    assert other.x.shape[:2] != b.x.shape[:2]
    grouped = task in GROUP_TASKS
    inputs = [(x.x, x.mask, *((x.hit_targets["hits_time_group"],) if grouped else ())) for x in (b, other)]
    n_groups = max(int(x.hit_targets["hits_time_group"].max()) for x in (b, other)) + 1 if grouped else 1
    net = Dense(m, n_groups)
    names, axes = onnx_inputs(task)
    path = export_onnx(net, inputs[0], tmp_path / f"{task}.onnx", input_names=names, dynamic_axes=axes)
    assert onnx_parity(net, path, inputs[0], atol=1e-4) < 1e-4
    assert onnx_parity(net, path, inputs[1], atol=1e-4) < 1e-4


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

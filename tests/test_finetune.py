"""Fine-tuning with hepnb.train on synthetic tensors (no detector): a pretrained encoder + decoder, then the
encoder with a new head started from it (init_from, prefix map, allowed missing and ignored keys), freezing,
lr multipliers through the schedule, the weight-decay rule, and metrics over the whole validation set."""
import shutil

import pyarrow.parquet as pq
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hepnb.core import HepnbError, sha256_file
from hepnb.train import (Trainer, TrainConfig, epoch_data, frozen_modules, init_weights, load_checkpoint, lr_factor,
                         param_groups)


pytestmark = pytest.mark.usefixtures("one_torch_thread")     # two shared cores (conftest.py)


class Encoder(nn.Module):
    "An embedding, two residual blocks (an ordered list), dropout and batch norm."
    def __init__(self, width=16):
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
                                     for _ in range(2)])
        self.drop = nn.Dropout(0.2)
        self.norm = nn.BatchNorm1d(width)

    def forward(self, x):
        h = self.embed(x)
        for block in self.blocks: h = h + block(h)
        return self.norm(self.drop(h))


class Pretrain(nn.Module):
    "Pretraining: reconstruct the input through the encoder and a decoder."
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder, self.decoder = Encoder(), nn.Linear(16, 8)


class Classifier(nn.Module):
    "Fine-tuning: the encoder (here called backbone) and a new head with its own dropout."
    def __init__(self, seed=1, width=16, outputs=1):
        super().__init__()
        torch.manual_seed(seed)
        self.backbone, self.head_drop, self.head = Encoder(width), nn.Dropout(0.1), nn.Linear(width, outputs)

    def forward(self, x):
        return self.head(self.head_drop(self.backbone(x))).squeeze(-1)


def reconstruct(model, batch):
    x, _ = batch
    return nn.functional.mse_loss(model.decoder(model.encoder(x)), x)


def classify(model, batch):
    "The loss, no batch metrics, and (logits, labels) for the whole-validation-set metrics."
    x, label = batch
    logit = model(x)
    return nn.functional.binary_cross_entropy_with_logits(logit, label), {}, (logit, label)


def toy(n, seed):
    "x ~ N(0, 1) in 8 dimensions; label 1 where x·w > 0."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x @ torch.randn(8, generator=torch.Generator().manual_seed(99)) > 0).float()


TRAIN, VAL = toy(256, 1), toy(128, 2)


def data(xy, bs=32):
    return epoch_data(DataLoader(TensorDataset(*xy), batch_size=bs))


def cfg(**kw):
    return TrainConfig(**{"device": "cpu", "precision": "fp32", "lr": 1e-2, "log_every": 1, **kw})


def auc(score, label):
    "Area under the ROC curve from ranks (Mann-Whitney U; continuous scores have no ties)."
    ranks = torch.empty_like(score)
    ranks[score.argsort()] = torch.arange(1, len(score) + 1, dtype=score.dtype)
    pos = label.bool()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    "A pretraining run folder (one epoch) and its weights."
    run = tmp_path_factory.mktemp("pretrain")
    model = Pretrain()
    Trainer(model, reconstruct, data(TRAIN), data(VAL), cfg(epochs=1), run).fit()
    return run, {k: v.clone() for k, v in model.state_dict().items()}


def init(run, **kw):
    "The fine-tuning options: the encoder renamed backbone, the head new, the decoder left behind."
    return dict(init_from=str(run), init_prefix_map={"encoder.": "backbone."}, init_allow_missing=["head.*"],
                init_ignore_unexpected=["decoder.*"], **kw)


def encoder_part(state):
    "The pretrained encoder's weights under the fine-tuning model's names."
    return {"backbone." + k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


# ---------------------------------------------------------------- init_from

def test_init_from_loads_the_encoder_and_records_the_source(pretrained, tmp_path):
    run, pre = pretrained
    source = shutil.copytree(run, tmp_path / "pretrain")          # removed below: this test's own copy
    model = Classifier()
    t = Trainer(model, classify, data(TRAIN), data(VAL), cfg(epochs=1, **init(source)), tmp_path / "ft")
    want = encoder_part(pre)
    assert len(want) == 15 and all(torch.equal(model.state_dict()[k], v) for k, v in want.items())  # with BN stats
    at_first_step = []

    def keep_first(opt, args, kwargs):      # the first forward updated the batch-norm statistics, not the weights
        if not at_first_step: at_first_step.append({k: p.detach().clone() for k, p in model.named_parameters()})
    t.opt.register_step_pre_hook(keep_first)
    t.fit()
    assert all(torch.equal(at_first_step[0][k], want[k]) for k in at_first_step[0] if k.startswith("backbone."))
    assert not torch.equal(model.backbone.embed.weight, want["backbone.embed.weight"])   # then it trained
    ck = load_checkpoint(tmp_path / "ft/checkpoints/last.pt", model)
    src = ck["resolved"]["init_from"]
    assert src["sha256"] == sha256_file(source / "checkpoints/best.pt")
    assert src["path"] == str((source / "checkpoints/best.pt").resolve()) and ck["config"]["init_from"] == str(source)
    assert src["loaded"] == 15 and src["missing"] == ["head.weight", "head.bias"]
    assert src["ignored"] == ["decoder.weight", "decoder.bias"] and src["weights"] == "model"
    assert ck["resolved"]["device"] == "cpu" and ck["resolved"]["precision"] == "fp32"
    # a resumed run goes on from its own checkpoint: the source is not read again (here it is gone)
    shutil.rmtree(source)
    again = Classifier(seed=5)
    t2 = Trainer(again, classify, data(TRAIN), data(VAL), cfg(epochs=1, **init(source)), tmp_path / "ft", resume=True)
    assert all(torch.equal(v, ck["model"][k]) for k, v in again.state_dict().items())
    assert t2.resolved["init_from"] == src


def test_init_from_refuses_missing_unexpected_and_other_shapes(pretrained, tmp_path):
    run, _ = pretrained
    prefix = {"init_from": str(run), "init_prefix_map": {"encoder.": "backbone."}}
    trainer = lambda model, **kw: Trainer(model, classify, data(TRAIN), None, cfg(**prefix, **kw), tmp_path / "ft")
    with pytest.raises(HepnbError, match=r"best\.pt: cannot initialise the model from this checkpoint: 2 model key\(s\) "
                                         r"not in the checkpoint: \['head\.weight', 'head\.bias'\]"):
        trainer(Classifier(), init_ignore_unexpected=["decoder.*"])
    with pytest.raises(HepnbError, match=r"best\.pt: .*2 checkpoint key\(s\) with no place in the model: "
                                         r"\['decoder\.weight', 'decoder\.bias'\]"):
        trainer(Classifier(), init_allow_missing=["head.*"])
    with pytest.raises(HepnbError, match=r"shapes differ \(checkpoint vs model\): \['encoder\.embed\.weight -> "
                                         r"backbone\.embed\.weight \[16, 8\] vs \[12, 8\]'"):
        trainer(Classifier(width=12), init_allow_missing=["head.*"], init_ignore_unexpected=["decoder.*"])
    assert not (tmp_path / "ft/checkpoints").exists()                      # refused before anything was written
    # without the prefix map nothing matches: every key is named as missing or unexpected
    with pytest.raises(HepnbError, match=r"17 model key\(s\) not in the checkpoint: \['backbone\.embed\.weight'.* and 12 "
                                         r"more.*17 checkpoint key\(s\) with no place in the model: \['encoder\.embed"):
        init_weights(Classifier(), run)
    with pytest.raises(HepnbError, match="expected a run folder or a checkpoint file, found nothing there"):
        init_weights(Classifier(), tmp_path / "nowhere")
    with pytest.raises(HepnbError, match=r"init_allow_missing\]: expected init_from beside it"):
        cfg(init_allow_missing=["head.*"]).check()


def test_a_head_of_another_shape_under_the_same_name(pretrained, tmp_path):
    "Fine-tuning a fine-tuned model for another task: its head is left out of the source and new in the model."
    run, _ = pretrained
    Trainer(Classifier(), classify, data(TRAIN), None, cfg(max_steps=1, **init(run)), tmp_path / "first").fit()
    wide = Classifier(outputs=3)
    with pytest.raises(HepnbError, match=r"shapes differ \(checkpoint vs model\): \['head\.weight \[1, 16\] vs \[3, 16\]'"):
        init_weights(wide, tmp_path / "first")
    info = init_weights(wide, tmp_path / "first", allow_missing=["head.*"], ignore_unexpected=["head.*"])
    assert info["ignored"] == info["missing"] == ["head.weight", "head.bias"] and info["loaded"] == 15


# ---------------------------------------------------------------- freezing

def test_frozen_backbone_stays_as_loaded_and_in_eval_mode(pretrained, tmp_path):
    run, pre = pretrained
    modes = []

    def loss(model, batch):
        if model.training:        # dropout and batch norm of the frozen backbone off, the head's dropout on
            modes.append((model.backbone.drop.training, model.backbone.norm.training, model.head_drop.training))
        return classify(model, batch)
    model = Classifier()
    t = Trainer(model, loss, data(TRAIN), data(VAL), cfg(epochs=2, ema_decay=0.9, **init(run, freeze=["backbone.*"])),
                tmp_path)
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    assert {id(p) for g in t.opt.param_groups for p in g["params"]} == {id(p) for p in model.head.parameters()}
    assert not any(p.requires_grad for p in model.backbone.parameters()) and frozen_modules(model) == ["backbone"]
    t.fit()
    assert len(modes) == 16 and set(modes) == {(False, False, True)}   # validation between the epochs flips nothing
    for weights in (model.state_dict(), t.ema.state_dict()):
        assert all(torch.equal(weights[k], v) for k, v in encoder_part(pre).items())  # running stats included
    assert not torch.equal(model.head.weight, head["weight"])


def test_unfreeze_last_block(pretrained, tmp_path):
    run, pre = pretrained
    model = Classifier()
    options = init(run, freeze=["backbone.*"], unfreeze_last={"backbone.blocks": 1})
    t = Trainer(model, classify, data(TRAIN), None, cfg(epochs=1, **options), tmp_path)
    assert frozen_modules(model) == ["backbone.embed", "backbone.blocks.0", "backbone.norm"]
    t.fit()
    now, want = model.state_dict(), encoder_part(pre)
    changed = {k for k, v in want.items() if not torch.equal(now[k], v)}
    assert changed == {k for k in want if k.startswith("backbone.blocks.1.")} and len(changed) == 4


# ---------------------------------------------------------------- lr multipliers and weight decay

def test_lr_multipliers_hold_through_warmup_and_cosine(pretrained, tmp_path):
    run, _ = pretrained
    model = Classifier()
    t = Trainer(model, classify, data(TRAIN), None,
                cfg(epochs=2, lr=0.02, warmup_steps=4, **init(run, lr_multipliers={"backbone.*": 0.1})), tmp_path)
    groups = param_groups(model, 0.01, {"backbone.*": 0.1})
    assert [g["lr_mult"] for g in t.opt.param_groups] == [g["lr_mult"] for g in groups] == [1.0, 1.0, 0.1, 0.1]
    assert [len(g["params"]) for g in t.opt.param_groups] == [len(g["names"]) for g in groups]
    assert all(n.startswith("backbone.") for g in groups[2:] for n in g["names"])
    seen = []
    t.opt.register_step_pre_hook(lambda opt, a, kw: seen.append([g["lr"] for g in opt.param_groups]))
    t.fit()
    assert len(seen) == 16                                               # horizon: 2 epochs x 8 batches
    for step, lrs in enumerate(seen):
        base = 0.02 * lr_factor(step, 4, 16)
        assert lrs == pytest.approx([base, base, 0.1 * base, 0.1 * base], rel=1e-12, abs=0), step
    assert seen[3][0] == pytest.approx(0.02) and seen[3][2] == pytest.approx(0.002)      # end of warm-up
    assert 0 < seen[15][0] < 0.002 and seen[15][2] == pytest.approx(0.1 * seen[15][0])   # deep in the cosine


class Tokens(nn.Module):
    "Every kind of parameter the weight-decay rule tells apart."
    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.query = nn.Parameter(torch.zeros(3, 8))                    # learned queries: a token
        self.embed = nn.Embedding(5, 8)
        self.attn = nn.ModuleDict({"query": nn.Linear(8, 8)})          # a projection named query: decays
        self.norms = nn.ModuleList([nn.LayerNorm(8), nn.BatchNorm1d(8), nn.GroupNorm(2, 8)])
        self.proj = nn.Linear(8, 8)


def test_no_weight_decay_on_norms_biases_and_tokens(pretrained, tmp_path):
    groups = param_groups(Tokens(), 0.05)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    assert decayed == {"attn.query.weight", "proj.weight"}
    assert len({n for g in groups for n in g["names"]}) == len(list(Tokens().parameters()))
    # the trainer's optimizer: norms and biases without decay, the weights of linear layers with it
    run, _ = pretrained
    model = Classifier()
    t = Trainer(model, classify, data(TRAIN), None, cfg(weight_decay=0.05, **init(run)), tmp_path)
    decay_of = {id(p): g["weight_decay"] for g in t.opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        want = 0.05 if name.endswith(".weight") and p.dim() == 2 else 0.0
        assert decay_of[id(p)] == want, name
    assert decay_of[id(model.backbone.blocks[0][0].weight)] == 0.0 and decay_of[id(model.backbone.norm.weight)] == 0.0


# ---------------------------------------------------------------- metrics over the whole validation set

class Count:
    "An accumulator of one's own: events seen, and the largest |logit|."
    def reset(self): self.n, self.top = 0, torch.tensor(0.0)
    def update(self, output, batch):
        self.n += len(output[0])
        self.top = torch.maximum(self.top, output[0].abs().max())
    def compute(self): return {"events": self.n, "max_abs_logit": self.top}


def test_val_metric_over_the_whole_validation_set(pretrained, tmp_path):
    run, _ = pretrained
    model = Classifier()

    def whole(logit, label):
        return {"auc": auc(logit, label), "q68": float(torch.quantile((torch.sigmoid(logit) - label).abs(), 0.68))}
    t = Trainer(model, classify, data(TRAIN), data(VAL, bs=40), cfg(epochs=2, monitor="val/auc", monitor_mode="max",
                **init(run)), tmp_path, val_metrics=whole)
    out = t.fit()
    model.eval()
    with torch.no_grad():                        # the same batches (4: 40, 40, 40, 8), concatenated by hand
        logit = torch.cat([model(x) for x, _ in DataLoader(TensorDataset(*VAL), batch_size=40)])
    assert out["val/auc"] == auc(logit, VAL[1]) and 0.8 < out["val/auc"] < 1
    assert out["val/q68"] == float(torch.quantile((torch.sigmoid(logit) - VAL[1]).abs(), 0.68))
    rows = pq.read_table(tmp_path / "metrics.parquet").to_pandas()
    aucs = rows[(rows.split == "val") & (rows.name == "auc")].value.tolist()
    assert len(aucs) == 2 and out["best"] == max(aucs)                     # the monitor is the epoch-level AUC
    # an accumulator object; and a name clash with the batch metrics is refused
    t = Trainer(Classifier(), classify, data(TRAIN), data(VAL, bs=40), cfg(max_steps=1, **init(run)), tmp_path / "b",
                val_metrics=Count())
    got = t.fit()
    assert got["val/events"] == 128 and got["val/max_abs_logit"] > 0
    with pytest.raises(HepnbError, match=r"val_metrics: expected val_metrics names other than the loss_fn's, found \['loss'\]"):
        Trainer(Classifier(), classify, data(TRAIN), data(VAL), cfg(max_steps=1, **init(run)), tmp_path / "c",
                val_metrics=lambda logit, label: {"loss": 0.0}).fit()
    no_output = lambda model, batch: classify(model, batch)[:2]
    with pytest.raises(HepnbError, match=r"expected loss_fn to return \(loss, metrics, output\)"):
        Trainer(Classifier(), no_output, data(TRAIN), data(VAL), cfg(max_steps=1, **init(run)), tmp_path / "d",
                val_metrics=whole).fit()


# ---------------------------------------------------------------- the command line

def test_cli_options_parse_into_the_config():
    from hepnb.cli import _config_from_args, build_parser
    args = build_parser("train").parse_args(
        ["train", "atar", "pion_stop", "--dataset", "D", "--run-dir", "R", "--init-from", "runs/pretrain",
         "--init-prefix-map", "encoder.=body.", "--init-allow-missing", "head.*,point.*",
         "--init-ignore-unexpected", "decoder.*", "--freeze", "body.*", "--unfreeze-last", "body.blocks=1",
         "--lr-multipliers", "body.*=0.1,point.*=0.5"])
    tc = _config_from_args(TrainConfig, args).check()
    assert tc.init_from == "runs/pretrain" and tc.init_prefix_map == {"encoder.": "body."}
    assert tc.init_allow_missing == ["head.*", "point.*"] and tc.init_ignore_unexpected == ["decoder.*"]
    assert tc.freeze == ["body.*"] and tc.unfreeze_last == {"body.blocks": 1}
    assert tc.lr_multipliers == {"body.*": 0.1, "point.*": 0.5}
    with pytest.raises(HepnbError, match=r"train config \[lr_multipliers\]: expected a float after '=', found 'body.\*=x'"):
        TrainConfig(device="cpu", lr_multipliers=["body.*=x"])

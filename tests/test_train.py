"""Tests of hepnb.train on tiny synthetic tasks (no detector): learning, lr schedule, accumulation, EMA, seeds,
checkpoints, exact resume after SIGKILL, non-finite losses, DDP on CPU, ONNX parity."""
import copy, json, math, os, signal, subprocess, sys, textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hepnb.core import HepnbError
from hepnb.train import (CKPT_VERSION, Trainer, TrainConfig, epoch_data, export_onnx, load_checkpoint, load_weights,
                         lr_factor, onnx_parity, save_checkpoint)

TIMING = {"events_per_s", "data_wait_frac"}               # wall-clock values: never compared between runs
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")     # two shared cores (conftest.py)


def toy(n=384, seed=0):
    "x ~ N(0, 1) in 8 dimensions, y = sin(x·w/3) + noise."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = torch.sin(x @ torch.randn(8, 1, generator=g) / 3) + 0.05 * torch.randn(n, 1, generator=g)
    return x, y


def mlp(seed=0, dropout=0.0, width=32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, 1))


def mse(model, batch):
    x, y = batch
    p = model(x)
    return nn.functional.mse_loss(p, y), {"mae": (p - y).abs().mean()}


def data(x, y, bs, shuffle=False):
    return epoch_data(DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=shuffle))


def cfg(**kw):
    return TrainConfig(**{"device": "cpu", "precision": "fp32", "lr": 1e-2, "log_every": 1, **kw})


def metric_rows(run_dir):
    "(step, epoch, split, name, value) rows of metrics.parquet without the wall-clock ones."
    t = pq.read_table(run_dir / "metrics.parquet").to_pylist()
    return [(r["step"], r["epoch"], r["split"], r["name"], r["value"]) for r in t if r["name"] not in TIMING]


# ---------------------------------------------------------------- learning, schedule, accumulation, EMA, seeds

def test_loss_decreases_and_beats_baseline(tmp_path):
    x, y = toy()
    xt, yt, xv, yv = x[:288], y[:288], x[288:], y[288:]
    out = Trainer(mlp(), mse, data(xt, yt, 32, shuffle=True), data(xv, yv, 64), cfg(epochs=8, warmup_steps=5),
                  tmp_path).fit()
    baseline = ((yv - yt.mean()) ** 2).mean().item()      # predict the training mean
    assert out["step"] == 8 * 9 and out["val/loss"] < 0.25 * baseline
    rows = pq.read_table(tmp_path / "metrics.parquet").to_pandas()
    ep = rows[(rows.split == "epoch") & (rows.name == "loss")].sort_values("epoch").value.to_numpy()
    assert len(ep) == 8 and ep[-1] < 0.3 * ep[0]
    thr = rows[rows.split == "epoch"].pivot(index="epoch", columns="name", values="value")
    assert (thr.events_per_s > 0).all() and thr.data_wait_frac.between(0, 1).all()


def test_progress_lines_every_log_every_steps(tmp_path, capsys):
    "A line per `log_every` optimizer steps and one per epoch on stdout, with the logged values; none with echo off."
    x, y = toy(96)
    Trainer(mlp(), mse, data(x[:64], y[:64], 16), data(x[64:], y[64:], 32), cfg(epochs=2, log_every=2), tmp_path / "a").fit()
    lines = capsys.readouterr().out.splitlines()
    steps = [ln for ln in lines if ln.startswith("step ")]
    assert [ln.split(":")[0] for ln in steps] == [f"step {s}" for s in (2, 4, 6, 8)]     # 4 steps per epoch
    assert all("loss " in ln and "lr " in ln for ln in steps)
    ends = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in ends] == ["epoch 0 done", "epoch 1 done"] and "val/loss" in ends[-1]
    Trainer(mlp(), mse, data(x[:64], y[:64], 16), None, cfg(epochs=1, log_every=2, echo=False), tmp_path / "b").fit()
    assert capsys.readouterr().out == ""


def test_fit_run_augments_training_batches_only(tmp_path):
    "`augment` sees every training batch with a generator drawn from (seed, epoch, batch): validation never, a rerun alike."
    from hepnb.train import fit_run
    x, y = toy(64)
    def flip(batch, g):
        xb, yb = batch
        return xb * (1 - 2 * torch.randint(0, 2, (len(xb), 1), generator=g)), yb
    def run(name):
        seen = {True: [], False: []}
        def loss(model, batch):
            seen[model.training].append(batch[0].clone())
            return mse(model, batch)
        loader = DataLoader(TensorDataset(x, y), batch_size=16)
        fit_run(tmp_path / name, mlp, loss, loader, loader, cfg(epochs=2, seed=3), record={}, augment=flip)
        return seen
    a, b = run("a"), run("b")
    assert len(a[True]) == 8 and all(torch.equal(u, v) for u, v in zip(a[True], b[True]))
    rows = torch.cat(a[True])
    assert torch.equal(rows.abs(), x.abs().repeat(2, 1)) and 0.3 < (rows != x.repeat(2, 1)).all(1).float().mean() < 0.7
    assert all(torch.equal(v, x[16 * (i % 4):16 * (i % 4 + 1)]) for i, v in enumerate(a[False]))


def test_warmup_cosine_values(tmp_path):
    # warm-up 4, horizon 12: (s+1)/4, then ½(1 + cos(π (s-4)/8)), computed by hand
    want = {0: 0.25, 1: 0.5, 2: 0.75, 3: 1.0, 4: 1.0, 6: 0.8535533905932737, 8: 0.5, 10: 0.14644660940672624,
            11: 0.03806023374435663, 12: 0.0, 20: 0.0}
    for s, f in want.items(): assert lr_factor(s, 4, 12) == pytest.approx(f, abs=1e-12), s
    assert lr_factor(7, 4, 12, "constant") == 1.0
    # the trainer uses these: 3 epochs x 4 batches = horizon 12 from len(train_data)
    x, y = toy(64)
    t = Trainer(mlp(), mse, data(x, y, 16), None, cfg(epochs=3, warmup_steps=4, lr=0.1), tmp_path)
    seen = []
    t.opt.register_step_pre_hook(lambda opt, a, kw: seen.append(opt.param_groups[0]["lr"]))
    t.fit()
    assert seen == pytest.approx([0.1 * lr_factor(s, 4, 12) for s in range(12)], abs=1e-15)
    assert seen[6] == pytest.approx(0.1 * 0.8535533905932737) and seen[11] == pytest.approx(0.1 * 0.03806023374435663)
    lr_rows = [r for r in metric_rows(tmp_path) if r[2] == "train" and r[3] == "lr"]
    assert [r[4] for r in lr_rows] == pytest.approx(seen, abs=1e-15)


def test_cosine_needs_a_horizon(tmp_path):
    x, y = toy(32)
    unsized = lambda epoch: iter([(x, y)])
    with pytest.raises(HepnbError, match="horizon"):
        Trainer(mlp(), mse, unsized, None, cfg(), tmp_path / "a").fit()
    assert Trainer(mlp(), mse, unsized, None, cfg(max_steps=1), tmp_path / "b").fit()["step"] == 1


def grads_and_weights(tmp_path, bs, accum):
    "Gradients seen by each optimizer step, and the final weights, for 24 events in batches of `bs`."
    x, y = toy(24)
    model = mlp()
    t = Trainer(model, mse, data(x, y, bs), None, cfg(grad_accum=accum, schedule="constant", weight_decay=0.1), tmp_path)
    grads = []
    t.opt.register_step_pre_hook(lambda opt, a, kw: grads.append([p.grad.clone() for p in model.parameters()]))
    t.fit()
    return grads, [p.detach().clone() for p in model.parameters()]


def test_grad_accumulation_equals_larger_batch(tmp_path):
    # 24 events: batches of 8 accumulated 2 by 2 give steps on [0:16] and (a group cut short) [16:24];
    # batches of 16 give the same two steps directly.
    g_acc, w_acc = grads_and_weights(tmp_path / "acc", 8, 2)
    g_big, w_big = grads_and_weights(tmp_path / "big", 16, 1)
    assert len(g_acc) == len(g_big) == 2
    for ga, gb in zip(g_acc, g_big):
        for a, b in zip(ga, gb): torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for a, b in zip(w_acc, w_big): torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_ema_is_hand_computed_ema(tmp_path):
    x, y = toy(96)
    model, d = mlp(), 0.8
    ema = [p.detach().clone() for p in model.parameters()]         # the EMA starts at the initial weights
    t = Trainer(model, mse, data(x, y, 16), None, cfg(ema_decay=d), tmp_path)

    def after_step(opt, a, kw):
        for e, p in zip(ema, model.parameters()): e.copy_(d * e + (1 - d) * p.detach())
    t.opt.register_step_post_hook(after_step)
    t.fit()
    assert t.step == 6
    for e, p in zip(ema, t.ema.parameters()): torch.testing.assert_close(p, e, rtol=1e-6, atol=1e-7)
    assert not all(torch.equal(p, e) for p, e in zip(model.parameters(), t.ema.parameters()))
    # validation uses the EMA weights
    ck = load_checkpoint(tmp_path / "checkpoints/last.pt", model)
    m2 = load_weights(mlp(seed=5), tmp_path / "checkpoints/last.pt", ema=True)
    assert all(torch.equal(a, b) for a, b in zip(m2.parameters(), t.ema.parameters())) and ck["ema"] is not None


def run_seeded(run_dir, seed):
    x, y = toy(192)
    c = cfg(epochs=2, seed=seed, warmup_steps=2, ema_decay=0.5, grad_accum=2, grad_clip=0.5)
    t = Trainer(mlp(dropout=0.2), mse, data(x[:128], y[:128], 16, shuffle=True), data(x[128:], y[128:], 32), c, run_dir)
    return t.fit(), [p.detach().clone() for p in t.module.parameters()]


def test_same_seed_same_metrics(tmp_path):
    (r1, w1), (r2, w2), (r3, _) = (run_seeded(tmp_path / n, s) for n, s in (("a", 3), ("b", 3), ("c", 4)))
    assert r1 == r2 and all(torch.equal(a, b) for a, b in zip(w1, w2))
    assert metric_rows(tmp_path / "a") == metric_rows(tmp_path / "b")
    assert r3["val/loss"] != r1["val/loss"]                 # dropout masks and shuffling follow the seed


def test_early_stopping_and_best_checkpoint(tmp_path):
    x, y = toy(64)
    calls = {"val": 0}

    def loss_fn(model, batch):                             # a validation score that only gets worse after epoch 0
        loss, m = mse(model, batch)
        if not model.training: calls["val"] += 1
        return loss, {**m, "score": float(calls["val"])}
    c = cfg(epochs=10, monitor="val/score", monitor_mode="min", early_stopping_patience=2)
    out = Trainer(mlp(), loss_fn, data(x, y, 16), data(x, y, 64), c, tmp_path / "min").fit()
    assert out["epoch"] == 3 and out["best"] == 1.0 and out["val/score"] == 3.0
    assert load_checkpoint(tmp_path / "min/checkpoints/best.pt")["progress"]["global_step"] == 4
    calls["val"] = 0
    out = Trainer(mlp(), loss_fn, data(x, y, 16), data(x, y, 64), cfg(epochs=4, monitor="val/score", monitor_mode="max",
                  early_stopping_patience=2), tmp_path / "max").fit()
    assert out["epoch"] == 4 and out["best"] == 4.0
    with pytest.raises(HepnbError, match="early stopping needs val_data"):
        Trainer(mlp(), mse, data(x, y, 16), None, c, tmp_path / "none")


def test_bf16_autocast_on_cpu(tmp_path):
    x, y = toy(128)
    t = Trainer(mlp(), mse, data(x, y, 32), data(x, y, 64), cfg(epochs=2, precision="bf16"), tmp_path)
    seen = []
    t.module[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = t.fit()
    assert t.amp is torch.bfloat16 and set(seen) == {torch.bfloat16} and math.isfinite(out["val/loss"])
    assert all(p.dtype == torch.float32 for p in t.module.parameters())     # weights and optimizer stay fp32


def test_config_checks(tmp_path):
    c = cfg()
    assert TrainConfig.from_dict(c.to_dict()) == c
    for bad in (dict(grad_accum=0), dict(precision="fp16"), dict(device="gpu"), dict(ema_decay=1.0),
                dict(max_steps=0), dict(schedule="linear")):
        with pytest.raises(HepnbError, match=list(bad)[0]):
            TrainConfig.from_dict({**c.to_dict(), **bad})
    with pytest.raises(HepnbError, match="unknown keys"):
        TrainConfig.from_dict({**c.to_dict(), "bogus": 1})
    with pytest.raises(HepnbError, match="run_dir"):
        Trainer(mlp(), mse, data(*toy(32), 16), None, c)


# ---------------------------------------------------------------- checkpoints

def test_checkpoint_contents_and_errors(tmp_path):
    x, y = toy(64)
    run = tmp_path / "run"
    model = mlp()
    Trainer(model, mse, data(x, y, 16), data(x, y, 32), cfg(epochs=2, ema_decay=0.9), run).fit()
    last = run / "checkpoints/last.pt"
    raw = torch.load(last, weights_only=True)               # only tensors, containers, numbers and strings
    assert raw["format_version"] == CKPT_VERSION and raw["progress"]["global_step"] == 8
    assert set(raw) >= {"model", "ema", "optimizer", "scheduler", "ranks", "config", "signature"}
    assert set(raw["ranks"][0]["rng"]) == {"python", "numpy", "torch", "cuda"} and (run / "checkpoints/best.pt").exists()
    assert raw["config"]["ema_decay"] == 0.9 and raw["signature"]["class"] == "torch.nn.modules.container.Sequential"

    with pytest.raises(HepnbError, match="already has a checkpoint"):
        Trainer(mlp(), mse, data(x, y, 16), None, cfg(epochs=2, ema_decay=0.9), run)
    with pytest.raises(HepnbError, match=r"last\.pt.*another model.*shapes differ \(checkpoint vs model\): \['0\.weight \[32, 8\] vs \[16, 8\]"):
        Trainer(mlp(width=16), mse, data(x, y, 16), None, cfg(epochs=2), run, resume=True)
    with pytest.raises(HepnbError, match="another model"):
        load_weights(nn.Sequential(nn.Linear(8, 1)), last)

    bad = tmp_path / "bad"; bad.mkdir()
    (bad / "garbage.pt").write_bytes(os.urandom(4096))
    blob = last.read_bytes()
    (bad / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    for name in ("garbage.pt", "truncated.pt"):
        with pytest.raises(HepnbError, match=rf"{name}: not a readable checkpoint") as e:
            load_checkpoint(bad / name)
        assert e.value.__cause__ is None and e.value.__suppress_context__
    save_checkpoint({**raw, "format_version": 99}, bad / "future.pt")
    with pytest.raises(HepnbError, match=r"future\.pt: checkpoint format version 99"):
        load_checkpoint(bad / "future.pt")
    torch.save({"model": {}}, bad / "other.pt")
    with pytest.raises(HepnbError, match="not a hepnb checkpoint"):
        load_checkpoint(bad / "other.pt")
    assert not list(run.glob("checkpoints/*.tmp")) and not list(run.glob("checkpoints/.*"))


def test_resume_of_a_finished_run_returns_its_metrics(tmp_path):
    x, y = toy(64)
    r1 = Trainer(mlp(), mse, data(x, y, 16), data(x, y, 32), cfg(epochs=2), tmp_path).fit()
    r2 = Trainer(mlp(), mse, data(x, y, 16), data(x, y, 32), cfg(epochs=2), tmp_path, resume=True).fit()
    assert r1 == r2 and len(metric_rows(tmp_path)) > 0


RESUME_SCRIPT = textwrap.dedent('''
    import os, signal, sys, torch
    torch.set_num_threads(1)
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from hepnb.train import Trainer, TrainConfig
    run_dir, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(352, 8, generator=g); y = torch.sin(x @ torch.randn(8, 1, generator=g) / 3)
    torch.manual_seed(0)                                   # the same initial weights in every process
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))
    # 17 batches per epoch, shuffled by a DataLoader that draws its order from torch's global RNG
    dl = DataLoader(TensorDataset(x[:272], y[:272]), batch_size=16, shuffle=True)
    vl = DataLoader(TensorDataset(x[272:], y[272:]), batch_size=32)
    seen = 0

    class Epoch:
        "The loader's batches; SIGKILLs this process when asked for batch number `kill_at` (counted over the run)."
        def __len__(self): return len(dl)
        def __iter__(self):
            global seen
            for b in dl:
                seen += 1
                if seen == kill_at: os.kill(os.getpid(), signal.SIGKILL)
                yield b

    def loss_fn(model, batch):
        x, y = batch; p = model(x)
        return nn.functional.mse_loss(p, y), {"mae": (p - y).abs().mean()}

    cfg = TrainConfig(epochs=3, lr=3e-3, warmup_steps=5, grad_accum=2, grad_clip=1.0, ema_decay=0.9, seed=1,
                      checkpoint_every=4, log_every=3, device="cpu", precision="fp32")
    t = Trainer(model, loss_fn, lambda epoch: Epoch(), lambda epoch: vl, cfg, run_dir, resume=True)
    result = t.fit()
    torch.save({"model": t.module.state_dict(), "ema": t.ema.state_dict(), "result": result}, out)
''')


def run_script(path, *args, timeout=120):
    return subprocess.run([sys.executable, str(path), *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def test_sigkill_and_resume_is_exact(tmp_path):
    script = tmp_path / "task.py"
    script.write_text(RESUME_SCRIPT)
    # uninterrupted reference: 3 epochs x 9 steps (17 batches, grad_accum 2: the 9th group is cut short)
    p = run_script(script, tmp_path / "full", tmp_path / "full.pt", -1)
    assert p.returncode == 0, p.stderr
    # the same run SIGKILLed while fetching the 14th batch of epoch 1 (in the middle of a group): 13 batches
    # trained in that epoch, global step 15; last.pt is from step 12, six batches into epoch 1
    p = run_script(script, tmp_path / "run", tmp_path / "run.pt", 17 + 14)
    assert p.returncode == -signal.SIGKILL, p.stderr
    ck = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert (ck["progress"]["epoch"], ck["progress"]["batch_in_epoch"], ck["progress"]["global_step"]) == (1, 6, 12)
    killed = pq.read_table(tmp_path / "run/metrics.parquet")      # readable after the kill
    assert max(killed.column("step").to_pylist()) == 15           # rows logged after the checkpoint are there...
    # ...and a new process resumes: fast-forwards 6 batches of epoch 1, restores the RNGs, goes on
    p = run_script(script, tmp_path / "run", tmp_path / "run.pt", -1)
    assert p.returncode == 0, p.stderr
    full, resumed = torch.load(tmp_path / "full.pt"), torch.load(tmp_path / "run.pt")
    assert full["result"] == resumed["result"] and full["result"]["step"] == 27
    for part in ("model", "ema"):
        assert full[part].keys() == resumed[part].keys()
        assert all(torch.equal(full[part][k], resumed[part][k]) for k in full[part]), part
    assert metric_rows(tmp_path / "run") == metric_rows(tmp_path / "full")  # rows after step 12 replaced, not doubled


# ---------------------------------------------------------------- non-finite losses

def test_nonfinite_losses_are_skipped_and_counted(tmp_path):
    x, y = toy(96)
    calls = {"n": 0}

    def sometimes_bad(model, batch):                      # training batches 2, 5 (epoch 0) and 7 (epoch 1) are bad
        loss, m = mse(model, batch)
        if not model.training: return loss, m
        calls["n"] += 1
        return loss * {2: float("nan"), 5: float("nan"), 7: float("inf")}.get(calls["n"], 1.0), m
    model = mlp()
    out = Trainer(model, sometimes_bad, data(x, y, 16), data(x, y, 48), cfg(epochs=2, max_nonfinite=1), tmp_path).fit()
    assert out["skipped_batches"] == 3 and out["step"] == 12 - 3
    assert all(torch.isfinite(p).all() for p in model.parameters()) and math.isfinite(out["val/loss"])
    sk = [r[4] for r in metric_rows(tmp_path) if r[3] == "skipped_batches"]
    assert sk == [2.0, 3.0]                                # cumulative, per epoch


def test_too_many_nonfinite_losses_stop_the_run(tmp_path):
    x, y = toy(96)
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    nan_loss = lambda model, batch: mse(model, batch)[0] * float("nan")
    t = Trainer(model, nan_loss, data(x, y, 16), None, cfg(epochs=2, max_nonfinite=3), tmp_path)
    with pytest.raises(HepnbError, match=r"non-finite loss 4 times in a row .*max_nonfinite=3.* epoch 0, batch 4, step 0"):
        t.fit()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # never trained on NaN


def test_metric_sums_stay_on_the_device(tmp_path, monkeypatch):
    "No host synchronisation per micro-batch for the metrics: the sums stay tensors until a log row or an epoch's end."
    import hepnb.train as train
    x, y = toy(256)
    to_host, real = [], train._host

    def counting(sums):
        to_host.append(sorted(sums))
        return real(sums)
    monkeypatch.setattr(train, "_host", counting)
    kinds = set()

    def loss_fn(model, batch):
        for part in t.sums.values(): kinds.update(type(s).__name__ for s, _ in part.values())
        return mse(model, batch)
    t = Trainer(mlp(), loss_fn, data(x, y, 8), None, cfg(epochs=2, log_every=16), tmp_path)
    t.fit()
    assert kinds == {"Tensor"}
    # 2 epochs of 32 micro-batches; per epoch: 2 log rows, the epoch's means, last.pt's epoch and window sums
    assert len(to_host) == 2 * (2 + 1 + 2)


# ---------------------------------------------------------------- DDP on CPU

DDP_SCRIPT = textwrap.dedent('''
    import json, os, sys, torch
    torch.set_num_threads(1)
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from hepnb.train import Trainer, TrainConfig
    out = sys.argv[1]
    rank = int(os.environ["RANK"])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g); y = x @ torch.randn(8, 1, generator=g)
    torch.manual_seed(rank)                                # different initial weights: DDP broadcasts rank 0's
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    # each rank its own shard: rows rank::2, 6 batches of 16 per epoch, validation shards of different sizes
    dl = DataLoader(TensorDataset(x[rank:192:2], y[rank:192:2]), batch_size=16)
    vl = DataLoader(TensorDataset(x[192 + rank * 8:], y[192 + rank * 8:]), batch_size=16)
    calls = 0

    def loss_fn(model, batch):
        global calls
        x, y = batch
        p = model(x)
        loss = nn.functional.mse_loss(p, y)
        if model.training:
            calls += 1
            if rank == 1 and calls == 4: loss = loss * float("nan")   # one rank only, on a group's last micro-batch
        return loss, {"n": float(len(x))}, (p, y)

    def whole(p, y):                                           # over both ranks' validation shards
        return {"events": len(y), "y_sum": float(y.sum())}

    cfg = TrainConfig(epochs=2, lr=1e-2, grad_accum=2, ema_decay=0.5, checkpoint_every=2, log_every=1, device="cpu",
                      precision="fp32")
    run_dir = os.path.join(out, f"run-rank{rank}")            # a folder per rank: only rank 0's may be written
    t = Trainer(model, loss_fn, lambda e: dl, lambda e: vl, cfg, run_dir, val_metrics=whole)
    result = t.fit()
    torch.save({"model": t.module.state_dict(), "ema": t.ema.state_dict()}, os.path.join(out, f"weights{rank}.pt"))
    json.dump(result, open(os.path.join(out, f"result{rank}.json"), "w"))
''')


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                        str(script), str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    w0, w1 = (torch.load(tmp_path / f"weights{r}.pt") for r in (0, 1))
    for part in ("model", "ema"):
        assert all(torch.equal(w0[part][k], w1[part][k]) for k in w0[part]), part
    r0, r1 = (json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1                                          # validation and train means reduced over ranks
    assert r0["skipped_batches"] == 1 and r0["step"] == 2 * 3    # the group with the skipped batch steps on the other
    assert r0["val/n"] == pytest.approx((4 * 16 * 16 + 3 * 16 * 16 + 8 * 8) / (64 + 56))   # event-weighted, both shards
    g = torch.Generator().manual_seed(0)                       # the script's data: val/ metrics over both shards
    x = torch.randn(256, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g)
    assert r0["val/events"] == 64 + 56
    assert r0["val/y_sum"] == pytest.approx(float(y[192:].sum() + y[200:].sum()), rel=1e-5)
    ck = load_checkpoint(tmp_path / "run-rank0/checkpoints/last.pt")
    assert ck["world_size"] == 2 and len(ck["ranks"]) == 2 and ck["progress"]["global_step"] == 6
    assert all(torch.equal(ck["model"][k], w0["model"][k]) for k in ck["model"])
    assert pq.read_table(tmp_path / "run-rank0/metrics.parquet").num_rows > 0
    assert not (tmp_path / "run-rank1").exists()


# ---------------------------------------------------------------- ONNX

class Encoder(nn.Module):
    "A small transformer encoder over padded hits, pooled over the real ones."
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(16, 2)

    def forward(self, x, mask):
        h = self.enc(self.inp(x), src_key_padding_mask=~mask) * mask.unsqueeze(-1)
        return self.out(h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1))


def padded(b, h, seed):
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(1, h + 1, (b,), generator=g); n[0] = h
    return torch.randn(b, h, 4, generator=g), torch.arange(h) < n[:, None]


def test_onnx_parity_mlp(tmp_path):
    model = mlp(dropout=0.5).train()                           # exported in eval mode whatever its mode
    path = export_onnx(model, (torch.randn(4, 8),), tmp_path / "mlp.onnx", input_names=["x"])
    assert path.exists() and not list(tmp_path.glob(".*"))
    assert model.training
    assert onnx_parity(model, path, (torch.randn(37, 8),), atol=1e-5) <= 1e-5   # another batch size
    with torch.no_grad(): model[3].bias.add_(1.0)
    with pytest.raises(HepnbError, match="differ by up to"):
        onnx_parity(model, path, (torch.randn(5, 8),))


def test_onnx_parity_transformer_with_padding_mask(tmp_path):
    torch.manual_seed(0)
    model = Encoder().eval()
    axes = {"x": {0: "batch", 1: "hits"}, "mask": {0: "batch", 1: "hits"}}
    path = export_onnx(model, padded(3, 7, 0), tmp_path / "enc.onnx", input_names=["x", "mask"], dynamic_axes=axes)
    x, mask = padded(5, 11, 1)                                 # other batch size and hit count, padding in most rows
    assert (~mask).any()
    assert onnx_parity(model, path, (x, mask), atol=1e-4) <= 1e-4
    # padding really is ignored: garbage in the padded slots changes nothing
    x2 = torch.where(mask.unsqueeze(-1), x, torch.full_like(x, 1e3))
    assert onnx_parity(model, path, (x2, mask), atol=1e-4) <= 1e-4


# ---------------------------------------------------------------- optional: MLflow, GPU

def test_mlflow_mirror(tmp_path):
    "Metrics mirrored to an MLflow SQLite store equal metrics.parquet; a resumed run logs into the same MLflow run."
    import mlflow      # a dev dependency (the `mlflow` extra): the test runs wherever `make test` does
    x, y = toy(64)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Trainer(mlp(), mse, data(x, y, 16), data(x, y, 32), cfg(epochs=1), tmp_path / "run", mlflow_uri=uri).fit()
    run_id = (tmp_path / "run/mlflow_run_id").read_text()
    with pytest.warns(UserWarning, match="differs in"):         # a second epoch on top of the first
        Trainer(mlp(), mse, data(x, y, 16), data(x, y, 32), cfg(epochs=2), tmp_path / "run", resume=True, mlflow_uri=uri).fit()
    assert (tmp_path / "run/mlflow_run_id").read_text() == run_id
    hist = mlflow.tracking.MlflowClient(uri).get_metric_history(run_id, "val/loss")
    parquet = [(s, v) for s, e, split, n, v in metric_rows(tmp_path / "run") if split == "val" and n == "loss"]
    got = sorted((m.step, m.value) for m in hist)
    assert len(parquet) == 2 and [s for s, _ in got] == [s for s, _ in parquet]
    assert [v for _, v in got] == pytest.approx([v for _, v in parquet])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_autocast(tmp_path):
    x, y = toy(256)
    t = Trainer(mlp(), mse, data(x, y, 32), data(x, y, 64), cfg(epochs=3, device="cuda", precision="auto"), tmp_path)
    assert t.amp is torch.bfloat16 and t.device.type == "cuda"
    out = t.fit()
    assert math.isfinite(out["val/loss"]) and next(t.module.parameters()).dtype == torch.float32
    ck = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert ck["ranks"][0]["rng"]["cuda"]

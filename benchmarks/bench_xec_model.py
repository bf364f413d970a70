"""XEC models: training throughput and model FLOP use, CPU default next to the seed's faithful size.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_xec_model.py                     # CPU, fp32
    python benchmarks/bench_xec_model.py --device cuda --precision bf16 --batch 256 --compile   # a GPU node

For each configuration: parameters, FLOPs per event of one training step (forward + backward, counted by
torch.utils.flop_counter), events/s over timed steps after warm-up, and the model FLOP utilisation (achieved FLOP/s
over the device's peak: --peak-tflops, or a known value for the GPU).
"""
import argparse
import contextlib
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from hepnb.detectors.xec.models import MaskedSensorModel, Normalisation, XecModel, XecModelConfig, sensor_inputs

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}   # dense, no sparsity


def batch(n, device):
    g = torch.Generator().manual_seed(0)
    npho = (torch.rand(n, 4760, generator=g) * 2000).to(device)
    time_ = torch.full((n, 4760), 3e-8, device=device)
    return sensor_inputs(npho, time_, Normalisation())


def step_fn(model, x, masked):
    if masked:
        return model(x).square().mean()
    return sum(v.square().mean() for v in model(x).values())


def measure(name, model, x, args, masked=False):
    dev = x.device
    model = model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run = torch.compile(model) if args.compile else model
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
    with FlopCounterMode(display=False) as fc:
        with amp: loss = step_fn(model, x[:2], masked)
        loss.backward()
    flops_per_event = fc.get_total_flops() / 2
    opt.zero_grad(set_to_none=True)
    def one():
        with amp: loss = step_fn(run, x, masked)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    for _ in range(args.warmup): one()
    if dev.type == "cuda": torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps): one()
    if dev.type == "cuda": torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    ev_s = args.steps * len(x) / dt
    achieved = ev_s * flops_per_event
    peak = args.peak_tflops
    if peak is None and dev.type == "cuda":
        gpu = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)
    mfu = f"{achieved / (peak * 1e12):.1%}" if peak else "-"
    params = sum(p.numel() for p in model.parameters())
    print(f"| {name} | {params / 1e6:.2f} M | {flops_per_event / 1e9:.3f} | {len(x)} | {ev_s:,.0f} | "
          f"{achieved / 1e12:.3f} | {mfu} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak for the precision used")
    ap.add_argument("--skip-faithful", action="store_true")
    a = ap.parse_args()
    dev = torch.device(a.device)
    x = batch(a.batch, dev)
    print(f"device {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else 'CPU, '}"
          f"{torch.get_num_threads()} threads), {a.precision}, batch {a.batch}, {a.steps} timed steps, "
          f"compile {a.compile}\n")
    print("| model | parameters | GFLOP / event (train step) | batch | events/s | achieved TFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|")
    torch.manual_seed(0)
    measure("regressor, CPU default, spatial tokens (energy, uvw)", XecModel(XecModelConfig(tokens="spatial")), x, a)
    measure("regressor, CPU default, face tokens", XecModel(XecModelConfig(tokens="face")), x, a)
    measure("masked-sensor model, CPU default (face tokens)", MaskedSensorModel(XecModelConfig()), x, a, masked=True)
    if not a.skip_faithful:
        faithful = XecModelConfig.faithful(tasks=("energy", "time", "uvw", "angle"))
        measure("regressor, faithful (the seed's size), 4 heads", XecModel(faithful), x, a)


if __name__ == "__main__":
    main()

"""`python -m ablation bench`: this engine's training throughput against the reference notebook loop.

In one process, on the same network (the seed's 9,752-parameter "5-lr-schedule" model), batch size
(128) and augmentation (±7° rotation, brightness/contrast jitter 0.1), it times
  (a) the loop every public solution uses: torchvision's MNIST with PIL transforms, a DataLoader
      with 0 and with 2 workers, SGD with momentum and cross-entropy (the notebook implementation's
      own pipeline, notebook.py, with the saturation and hue jitter the public notebooks add);
  (b) the engine, one seed (train.train_many);
  (c) the engine, K seeds in one pass;
and reports images/s per model, the ratio of each to the best reference setting, the achieved
GFLOP/s (FLOPs counted by torch's FlopCounterMode) and that as a share of the machine's own
float32 matrix-multiply rate measured in the same run.

Then what the study spends, apart, for the seed's network and the final step's: the engine's train step
(images/s) and the evaluation that follows every epoch (images/s through the step's test-time views, on
the test set), and the seconds of one epoch of each at those rates.

`--against DIR` measures an engine change: this checkout's bench and DIR's (another checkout, e.g. a git
worktree of the last commit of the previous engine generation), each in a fresh process, alternated for
`--rounds` rounds on this machine, so that a slower or busier spell weighs on both; the median of each side's
figures and their ratio.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..engine.data import MNIST, TRAIN_LABEL_COUNTS, data_root, load_mnist
from ..engine.models import count_parameters, evaluate
from ..engine.train import configure_threads, initial_model, resolve_device, train_many
from ..runs.machine import device_name
from ..study.analysis import text_table
from ..study.registry import FINAL_STEP, STEPS
from ..study.step import Step
from . import notebook

BATCH_SIZE = 128
WARMUP_BATCHES = 2
WORKERS = (0, 2)
MATMUL_SIZE = 2048
MATMUL_REPEATS = 3
EVAL_IMAGES = 10_000  # one epoch's evaluation: the test set
MAX_BATCHES = 60_000 // BATCH_SIZE - WARMUP_BATCHES  # the reference loop draws warm-up + timed batches from one epoch
PUBLIC_JITTER = dict(saturation=0.1, hue=0.1)  # what the public notebooks' ColorJitter adds to the step's


def bench_step() -> Step:
    return dataclasses.replace(STEPS["5-lr-schedule"], batch_size=BATCH_SIZE)


def _stderr(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously: the clock may only be read once they have finished.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_loop(step: Step, device: torch.device, root, workers: int, batches: int) -> float:
    """Images/s of the notebook loop: PIL transforms in a DataLoader, then a plain training step (no per-batch
    loss.item(), which would only slow this side)."""
    dataset = notebook.mnist(root, True, notebook.transforms_for(step, True, **PUBLIC_JITTER))
    loader = notebook.train_loader(dataset, step, 0, device, workers=workers)
    model = initial_model(step, 0).to(device).train()
    opt = notebook.optimizer(step, model)
    # The warm-up batches absorb worker start-up; workers keep prefetching meanwhile, which if anything
    # flatters the reference.
    for i, (x, y) in enumerate(itertools.islice(loader, WARMUP_BATCHES + batches)):
        if i == WARMUP_BATCHES:
            _sync(device)
            t0 = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return batches * BATCH_SIZE / (time.perf_counter() - t0)


def engine(step: Step, device: torch.device, data: MNIST, seeds: int, batches: int, threads: int) -> float:
    """Images/s per model of train_many over `seeds` seeds: seeds * images / seconds."""
    kwargs = dict(device=device, data=data, threads=threads, limit_test=BATCH_SIZE, epochs=1)
    train_many(step, list(range(seeds)), limit_train=WARMUP_BATCHES * BATCH_SIZE, **kwargs)
    _sync(device)
    t0 = time.perf_counter()
    # The timed call is a whole engine epoch: it also builds the model and evaluates 128 test images,
    # a small cost counted against the engine.
    train_many(step, list(range(seeds)), limit_train=batches * BATCH_SIZE, **kwargs)
    _sync(device)
    return seeds * batches * BATCH_SIZE / (time.perf_counter() - t0)


def evaluation(step: Step, device: torch.device, data: MNIST, images: int) -> float:
    """Images/s of the evaluation train_many runs after every epoch: `step`'s network, through its test-time
    views, over the first `images` test images (after one warm-up pass over a chunk of them)."""
    model = initial_model(step, 0).to(device)
    x, y = data.test_images[:images], data.test_labels[:images]
    evaluate(model, x[:BATCH_SIZE], y[:BATCH_SIZE])
    _sync(device)
    t0 = time.perf_counter()
    evaluate(model, x, y)
    _sync(device)
    return len(y) / (time.perf_counter() - t0)


def spending(step: Step, train_rate: float, device: torch.device, data: MNIST, eval_images: int) -> dict:
    """`step`'s train step rate (given), its evaluation rate (measured here) and one epoch of each in seconds."""
    eval_rate = evaluation(step, device, data, eval_images)
    return {"params": count_parameters(initial_model(step, 0)), "views": 1 + len(step.tta) + len(step.tta_rotations),
            "train_samples_per_s": train_rate, "eval_samples_per_s": eval_rate,
            "train_seconds_per_epoch": sum(TRAIN_LABEL_COUNTS) / train_rate, "eval_seconds_per_epoch": EVAL_IMAGES / eval_rate}


def flops_per_sample(step: Step, device: torch.device) -> float:
    """FLOPs of one training image (forward + backward of the plain network), as torch counts them."""
    model = initial_model(step, 0).to(device).train()
    x = torch.randn(BATCH_SIZE, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (BATCH_SIZE,), device=device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / BATCH_SIZE


def matmul_gflops(device: torch.device, size: int = MATMUL_SIZE) -> float:
    """The best of a few float32 size x size torch.mm, in GFLOP/s, at the current thread count."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    with FlopCounterMode(display=False) as counter:  # doubles as the warm-up
        torch.mm(a, b)
    _sync(device)
    best = float("inf")
    for _ in range(MATMUL_REPEATS):
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return counter.get_total_flops() / best / 1e9


def check_batches(batches: int) -> None:
    if not 0 < batches <= MAX_BATCHES:
        raise ValueError(f"--batches must be between 1 and {MAX_BATCHES}, got {batches}")


def all_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run(device: str | torch.device = "cpu", batches: int = 30, seeds: int = 4, data_dir=None, *,
        data: MNIST | None = None, threads: int | None = None, workers: tuple[int, ...] = WORKERS,
        matmul_size: int = MATMUL_SIZE, eval_images: int = EVAL_IMAGES, log: Callable[[str], None] = _stderr) -> dict:
    """Measure everything; return the figures as a JSON-ready dict (see the module docstring)."""
    check_batches(batches)
    device = resolve_device(str(device))
    data = (data or load_mnist(data_dir)).to(device)
    step = bench_step()
    # Every phase runs at the engine's thread count, so the comparison is per core used.
    n_threads = configure_threads(threads)

    by_workers = {}
    for w in workers:
        log(f"reference loop, {w} DataLoader workers, {WARMUP_BATCHES}+{batches} batches")
        by_workers[w] = reference_loop(step, device, data_root(data_dir), w, batches)
    log(f"engine, 1 seed, {batches} batches")
    single = engine(step, device, data, 1, batches, n_threads)
    log(f"engine, {seeds} seeds in one pass, {batches} batches")
    multi = engine(step, device, data, seeds, batches, n_threads)

    final = STEPS[FINAL_STEP]
    log(f"what the study spends: the train step of {final.name}, {batches} batches; the evaluation of both "
        f"networks, {eval_images:,} test images")
    spent = {step.name: spending(step, single, device, data, eval_images),
             final.name: spending(final, engine(final, device, data, 1, batches, n_threads), device, data, eval_images)}

    log(f"FLOP count and {matmul_size}x{matmul_size} matmul rate")
    flops = flops_per_sample(step, device)
    mm = matmul_gflops(device, matmul_size)
    mm_all = None
    if device.type == "cpu":
        torch.set_num_threads(all_cores())
        try:
            mm_all = matmul_gflops(device, matmul_size)
        finally:
            torch.set_num_threads(n_threads)

    best_w = max(by_workers, key=by_workers.get)
    reference = by_workers[best_w]
    gflops = {name: rate * flops / 1e9 for name, rate in (("reference", reference), ("engine", single), ("multi_seed", multi))}
    return {
        "reference_samples_per_s": reference,
        "engine_samples_per_s": single,
        "multi_seed_samples_per_s": multi,
        "speedup_single": single / reference,
        "speedup_multi": multi / reference,
        "reference_samples_per_s_by_workers": {str(w): r for w, r in by_workers.items()},
        "reference_workers": best_w,
        "flops_per_sample": flops,
        "reference_gflops": gflops["reference"],
        "engine_gflops": gflops["engine"],
        "multi_seed_gflops": gflops["multi_seed"],
        "matmul_gflops": mm,
        "matmul_gflops_all_cores": mm_all,
        "reference_matmul_share": gflops["reference"] / mm,
        "matmul_share": gflops["engine"] / mm,
        "multi_seed_matmul_share": gflops["multi_seed"] / mm,
        "spending": spent,
        "eval_images": eval_images,
        "matmul_size": matmul_size,
        "model": step.name,
        "params": count_parameters(initial_model(step, 0)),
        "batch_size": BATCH_SIZE,
        "batches": batches,
        "warmup_batches": WARMUP_BATCHES,
        "seeds": seeds,
        "device": device.type,
        "device_name": device_name(device.type),
        "threads": n_threads,
        "all_cores": all_cores(),
        "torch": torch.__version__,
    }


def format_table(f: dict) -> str:
    """The figures as a readable table and a few lines of context."""
    ref = f["reference_samples_per_s"]
    rows = [[f"reference loop, {w} workers", r] for w, r in f["reference_samples_per_s_by_workers"].items()]
    rows += [["engine, 1 seed", f["engine_samples_per_s"]],
             [f"engine, {f['seeds']} seeds in one pass", f["multi_seed_samples_per_s"]]]
    cells = [["", "images/s per model", "× reference", "GFLOP/s", "of matmul"]]
    for label, rate in rows:
        gflops = rate * f["flops_per_sample"] / 1e9
        cells.append([label, f"{rate:,.0f}", f"{rate / ref:.2f}", f"{gflops:.2f}", f"{gflops / f['matmul_gflops']:.1%}"])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    all_cores = f"; {f['matmul_gflops_all_cores']:.1f} GFLOP/s at all {f['all_cores']} cores" if f["matmul_gflops_all_cores"] else ""
    lines += [
        "",
        f"model {f['model']} ({f['params']:,} params), batch {f['batch_size']}, {f['batches']} timed batches "
        f"after {f['warmup_batches']} warm-up; × reference is against the best worker setting",
        f"one training image: {f['flops_per_sample'] / 1e6:.2f} MFLOP forward+backward (FlopCounterMode)",
        f"matmul {f['matmul_size']}x{f['matmul_size']} float32: {f['matmul_gflops']:.1f} GFLOP/s at {f['threads']} "
        f"thread(s){all_cores}",
        f"device {f['device']} ({f['device_name']}), {f['threads']} thread(s), torch {f['torch']}",
        "",
        "what the study spends (the engine, one seed):",
    ]
    for name, s in f["spending"].items():
        lines.append(f"  {name} ({s['params']:,} params, {s['views']} view{'s' * (s['views'] > 1)}): train step "
                     f"{s['train_samples_per_s']:,.0f} images/s ({s['train_seconds_per_epoch']:.0f} s an epoch), "
                     f"evaluation {s['eval_samples_per_s']:,.0f} images/s ({s['eval_seconds_per_epoch']:.1f} s an epoch)")
    return "\n".join(lines)


# --- one checkout against another --------------------------------------------------------------------

HERE = Path(__file__).resolve().parents[2]  # this checkout: the folder holding the ablation package


def bench_in(tree: Path, args: list[str]) -> dict:
    """`python -m ablation bench --json ARGS` run by `tree`'s own code, in a fresh process; its figures."""
    done = subprocess.run([sys.executable, "-m", "ablation", "bench", "--json", *args], cwd=tree, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    if done.returncode:
        raise RuntimeError(f"the bench in {tree} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def compared_figures(f: dict) -> dict[str, float]:
    """The figures an engine change is judged on, by name: each network's train step and evaluation (images/s),
    and the machine's matrix-multiply rate, the control (a ratio far from 1 says the machine changed)."""
    out = {f"{name} {label}, images/s": s[f"{what}_samples_per_s"] for name, s in f["spending"].items()
           for what, label in (("train", "train step"), ("eval", "evaluation"))}
    return out | {"float32 matmul, GFLOP/s": f["matmul_gflops"]}


def against(other: Path, rounds: int, args: list[str], log: Callable[[str], None] = _stderr,
            measure: Callable[[Path, list[str]], dict] = bench_in) -> dict:
    """This checkout against `other`, alternated for `rounds` rounds (which goes first alternates too): the
    median of each figure on each side and this side's over the other's."""
    other = Path(other).resolve()
    if not (other / "ablation" / "__main__.py").is_file():
        raise ValueError(f"{other} holds no checkout of this project (no ablation/__main__.py)")
    sides: dict[str, list[dict]] = {"this": [], "other": []}
    for r in range(rounds):
        for side in ("this", "other") if r % 2 == 0 else ("other", "this"):
            log(f"round {r + 1} of {rounds}: {side} ({HERE if side == 'this' else other})")
            sides[side].append(compared_figures(measure(HERE if side == "this" else other, args)))
    median = {side: {k: statistics.median(f[k] for f in runs) for k in runs[0]} for side, runs in sides.items()}
    return {"this": str(HERE), "other": str(other), "rounds": rounds,
            "figures": {k: {"this": median["this"][k], "other": median["other"][k],
                            "ratio": median["this"][k] / median["other"][k]}
                        for k in median["this"] if k in median["other"]}}


def format_against(c: dict) -> str:
    rows = [[name, f"{f['this']:,.0f}", f"{f['other']:,.0f}", f"{f['ratio']:.2f}x"] for name, f in c["figures"].items()]
    return "\n".join([f"this checkout ({c['this']}) against {c['other']}: medians of {c['rounds']} alternated rounds",
                      text_table(rows, ["figure", "this", "other", "this / other"])])

"""The training engine: `train` one seed of a step, `train_many` several seeds of a step in one pass.

The whole data set sits on the device as uint8; an epoch is a permutation from the seed's order
generator, and each batch is indexed, augmented (augment.py) and normalised there, with no
DataLoader and no per-sample Python. Each seed owns four generators, one per source of randomness
(initialisation, data order, augmentation, dropout), so changing one knob does not reshuffle the
others, and a K-seed pass (models.Net with seeds=K: grouped convolutions) draws for seed k exactly
what a one-seed run of seed k draws. What can still differ between the two is floating-point
summation order inside the grouped convolution kernels; tests/test_train.py bounds it.
"""
from __future__ import annotations

import copy
import math
import os
import time
from typing import Callable

import torch
import torch.nn.functional as F

from ..study.registry import get_step
from ..study.screen import VIEW_FIELDS, views_only
from ..study.step import Step, config_diff
from . import RunResult, git_state, source_hash
from . import augment as aug
from .data import MNIST, evaluation_label, load_mnist
from .models import Net, count_parameters, evaluate, for_step, normalize, stack_seeds, unstack_seeds
from .schedule import learning_rate

DEFAULT_THREADS = 1  # one thread per process: bit-identical results whatever the run mode (xdist or not)
# With deterministic algorithms on, torch fills every new tensor with NaN so that a kernel reading memory it
# never wrote shows up; that fill was 18 % of an epoch's time. No op of this engine reads such memory (runs of
# steps that use every op come out bit for bit with it on: tests/test_train.py), so it is off.
FILL_UNINITIALIZED = False
STREAMS = ("init", "order", "augment", "dropout")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU on this machine")
    return torch.device(device)


def configure_threads(threads: int | None = None) -> int:
    n = threads or int(os.environ.get("ABLATION_THREADS", DEFAULT_THREADS))
    torch.set_num_threads(n)
    return n


def generator(seed: int, stream: str, device: torch.device) -> torch.Generator:
    """The generator of one source of randomness of one seed; distinct for every (seed, stream)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + STREAMS.index(stream))


def initial_model(step: Step, seed: int) -> Net:
    """Seed `seed`'s freshly initialised one-seed network (PyTorch's default init, on the CPU)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator(seed, "init", torch.device("cpu")).initial_seed())
        return for_step(step)


def _batch(data: MNIST, perms: list[torch.Tensor], start: int, stop: int, step: Step,
           aug_gens) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed k's images (N, K, 28, 28), augmented with seed k's generator when the step augments, and labels
    (N, K)."""
    idx = [p[start:stop] for p in perms]
    x = torch.cat([data.train_images[i] for i in idx]).unsqueeze(1).float() / 255  # (K*N, 1, 28, 28)
    if step.augment.active:
        n = stop - start
        params = torch.cat([aug.sample_params(n, step.augment, g, x.device) for g in aug_gens])
        x = aug.apply(x, params, step.augment)
    k, n = len(perms), stop - start
    x = normalize(x).view(k, n, 28, 28).transpose(0, 1)
    y = torch.stack([data.train_labels[i] for i in idx], dim=1)
    return x, y


def _average_pairs(averaged: Net, model: Net) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(averaged, live) tensor pairs, built once: state_dict's tensors share storage with the modules'
    parameters and buffers, which the optimiser and BatchNorm update in place."""
    return list(zip(averaged.state_dict().values(), model.state_dict().values()))


@torch.no_grad()
def _update_average(pairs: list[tuple[torch.Tensor, torch.Tensor]], decay: float, iteration: int) -> None:
    """One step of the exponential moving average of the weights and of the BatchNorm statistics.

    The decay ramps up as (1 + t) / (10 + t) to `decay`, so the first iterations' random weights do not
    linger in the average: until the cap, the average spans about the last tenth of the iterations
    (0.998 is reached after 4,490 iterations, epoch 10 at batch size 128). BatchNorm's running
    statistics are averaged like the weights, since they belong to the weights they were measured
    with; its integer batch counter is copied.
    """
    d = min(decay, (1 + iteration) / (10 + iteration))
    for mine, live in pairs:
        if mine.is_floating_point():
            mine.lerp_(live, 1 - d)
        else:
            mine.copy_(live)


def train_many(
    step: Step | str,
    seeds: list[int] | tuple[int, ...] = (0,),
    *,
    device: str | torch.device = "cpu",
    epochs: int | None = None,
    data: MNIST | None = None,
    data_dir: str | None = None,
    threads: int | None = None,
    holdout: int = 0,
    fold: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
    on_epoch: Callable[[int, int, dict], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    views: tuple[Step, ...] = (),
) -> list[RunResult]:
    """Train every seed of `seeds` for `step` in one pass; return one RunResult per seed.

    views: steps that differ from `step` only in how a network is evaluated (VIEW_FIELDS: its test-time views).
    Their runs would train exactly these weights, so they are not trained again: after every epoch the same
    weights are also evaluated their way, and one RunResult per seed of each follows `step`'s, in that order
    (its engine notes whose training it used).

    holdout: hold this many training images out as the evaluation set (design choices are made
    there, never on the test set); fold: which block of that size (k-fold validation).
    limit_train / limit_test: use only the first N images (the quick smoke run).
    on_epoch(seed, epoch, row) is called after each epoch; on_batch(n_images) per batch.
    """
    step = get_step(step) if isinstance(step, str) else step
    epochs = step.epochs if epochs is None else epochs
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    for v in views:
        if not views_only(step, v):
            raise ValueError(f"{v.name} cannot be evaluated on {step.name}'s training: it differs in "
                             f"{', '.join(sorted(config_diff(step, v))) or 'nothing'}, not only in {', '.join(sorted(VIEW_FIELDS))}")
    device = resolve_device(str(device))
    # Read the code's identity now, while it is the code this process runs: a record written at the end
    # must not take the hash of files edited on disk during a run of hours.
    source_hash(), git_state()
    n_threads = configure_threads(threads)
    # warn_only: a few CUDA kernels have no deterministic variant; on the CPU every op used here has.
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    torch.utils.deterministic.fill_uninitialized_memory = FILL_UNINITIALIZED
    data = (data or load_mnist(data_dir)).to(device)
    evaluated_on = evaluation_label(holdout, fold)
    if holdout:
        data = data.holdout(holdout, fold=fold)
    if limit_train or limit_test:
        data = MNIST(data.train_images[:limit_train], data.train_labels[:limit_train],
                     data.test_images[:limit_test], data.test_labels[:limit_test])

    k = len(seeds)
    singles = [initial_model(step, s) for s in seeds]
    params = count_parameters(singles[0])
    model = (singles[0] if k == 1 else stack_seeds(singles)).to(device)
    # The averaged copy is what is evaluated and saved; the live model only trains.
    averaged = copy.deepcopy(model) if step.ema else None
    shown = model if averaged is None else averaged  # evaluated each epoch and saved at the end
    pairs = _average_pairs(averaged, model) if averaged is not None else []
    opt = torch.optim.SGD(model.parameters(), lr=step.lr, momentum=step.momentum, weight_decay=step.weight_decay)
    gens = {name: [generator(s, name, device) for s in seeds] for name in STREAMS if name != "init"}
    model.set_dropout_generators(gens["dropout"])

    n_train, bs = len(data.train_labels), step.batch_size
    iters_per_epoch = math.ceil(n_train / bs)
    started = time.time()
    engine = {"device": device.type, "threads": n_threads, "seeds_per_pass": k, "train_images": n_train,
              "eval_images": len(data.test_labels)}
    runs = {(one.name, s): RunResult(one, s, params, evaluated_on=evaluated_on, started=started,
                                     engine=dict(engine, **({"trained_with": step.name} if one is not step else {})))
            for one in (step, *views) for s in seeds}
    alive = torch.ones(k, dtype=torch.bool)
    iteration = 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perms = [torch.randperm(n_train, generator=g, device=device) for g in gens["order"]]
        loss_sum, correct = torch.zeros(k, device=device), torch.zeros(k, device=device)
        for start in range(0, n_train, bs):
            stop = min(start + bs, n_train)
            lr = learning_rate(step, iteration, iters_per_epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            x, y = _batch(data, perms, start, stop, step, gens["augment"])
            logits = model(x).view(stop - start, k, -1)
            per_seed = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(0)
            opt.zero_grad(set_to_none=True)
            # Summing the per-seed means gives each seed exactly the gradient of its own mean loss.
            per_seed.sum().backward()
            opt.step()
            iteration += 1
            if averaged is not None:
                _update_average(pairs, step.ema, iteration)
            with torch.no_grad():
                loss_sum += per_seed.detach() * (stop - start)
                correct += (logits.argmax(-1) == y).sum(0)
            if on_batch:
                on_batch((stop - start) * k)
        tested = {one.name: evaluated_as(shown, one, data) for one in (step, *views)}
        seconds = time.perf_counter() - t0
        train_loss, train_acc = (loss_sum / n_train).tolist(), (correct / n_train * 100).tolist()
        finite = [math.isfinite(trl) for trl in train_loss]
        for one in (step, *views):
            test_loss, test_acc = tested[one.name]
            for i, seed in enumerate(seeds):
                if not alive[i]:
                    continue
                if not finite[i]:
                    runs[one.name, seed].diverged_at = epoch
                    continue
                row = {"epoch": epoch, "train_loss": train_loss[i], "train_acc": train_acc[i], "test_loss": test_loss[i],
                       "test_acc": test_acc[i], "lr": lr, "seconds": seconds}
                runs[one.name, seed].history.append(row)
                if on_epoch and one is step:
                    on_epoch(seed, epoch, row)
        alive &= torch.tensor(finite)
        if not alive.any():
            break

    finished = time.time()
    states = [shown.state_dict()] if k == 1 else unstack_seeds(shown)
    weights = {seed: {name: t.detach().cpu().clone() for name, t in state.items()} for seed, state in zip(seeds, states)}
    for (_, seed), r in runs.items():
        r.state_dict, r.finished = weights[seed], finished  # a view step's weights are its training's, the same tensors
    return list(runs.values())


def evaluated_as(model: Net, step: Step, data: MNIST) -> tuple[list[float], list[float]]:
    """Per seed, (mean test loss, test accuracy %) of `model` on data's test images, through `step`'s test-time
    views (which a network holds as plain attributes: set for this evaluation, then put back)."""
    kept = model.shifts, model.rotations
    model.shifts, model.rotations = step.tta, step.tta_rotations
    try:
        loss, correct = evaluate(model, data.test_images, data.test_labels)
    finally:
        model.shifts, model.rotations = kept
    n = len(data.test_labels)
    return (loss / n).tolist(), (correct / n * 100).tolist()


def train(step: Step | str, seed: int = 0, **kwargs) -> RunResult:
    """Train one seed of `step` (see train_many for the keywords)."""
    return train_many(step, [seed], **kwargs)[0]

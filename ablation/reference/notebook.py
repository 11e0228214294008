"""A second implementation: the step's recipe trained the way a notebook trains it.

`train_notebook` shares only the network (models.for_step) and the record format (records.py) with the
engine (train.py). Everything else is the notebook's: `torchvision.datasets.MNIST` with PIL transforms,
a `DataLoader`, `torch.optim.SGD` and `torch.optim.lr_scheduler`, and one global seed
(`torch.manual_seed(seed)`) for the initialisation, the augmentation and dropout, with the data order
drawn from a `torch.Generator` seeded with the same number. Its records say `implementation: notebook`
in their provenance (the engine's have no such key), so the report can set the two side by side
(`compare_implementations`) and a difference beyond noise can be traced to a detail.

Where this loop differs from the engine on purpose (the engine's side in brackets):
- random streams: one global torch seed for init, augmentation and dropout, the DataLoader's generator
  for the order [four generators per seed, seeded seed * 1,000,003 + stream]; so seed k here is not
  seed k there, and the comparison is between distributions, never seed by seed;
- jitter: ColorJitter on the PIL image, uint8 in and out (each factor's result rounded to a grey level;
  contrast blends towards the image's mean rounded to a whole grey level, as PIL's ImageEnhance does)
  [float pixels in [0, 1], exact mean, no rounding]. Both jitter the unnormalised pixels, before the
  rotation and before Normalize; both apply brightness and contrast in a random order, each first with
  probability 1/2, with factors ~ U[1-β, 1+β] and U[1-γ, 1+γ];
- rotation: RandomRotation on the PIL image (PIL's own resampling: nearest rounds half up, bilinear
  rounds to uint8) [grid_sample on float pixels: nearest rounds half to even, bilinear stays float];
  same angle range, centre, direction and fill 0;
- the learning rate: OneCycleLR with cycle_momentum=False [momentum fixed at the step's value]; the
  notebook default would also cycle the momentum between 0.85 and 0.95, a second change the step
  does not make. Its per-iteration learning rates are the engine's (tests/test_notebook.py).

One-change checks: `like_engine` takes any of the engine's four sources of randomness, each as the engine
draws it for that seed: "init" (its initial weights), "order" (its permutation each epoch), "augment" (its
batched augmentation on float pixels, augment.py, in place of the PIL transforms) and "dropout" (its masks).
Switching one shows what that detail alone does to the distribution; switching all four leaves only
floating-point summation order between this loop and the engine (tests/test_notebook.py checks a tiny run).
On the CPU only: the engine draws its order and augmentation on the training device.

From the command line (records under reports/notebook/<step>/seed-<k>.json, one process per --jobs):
    python -m ablation notebook --steps final --seeds 0-4 --runs reports/notebook --jobs 2
    python -m ablation notebook --steps final --compare reports/runs --runs reports/notebook
The bench (bench.py) times this loop's data pipeline: `transforms_for`, `mnist` and `train_loader` serve both.

Not implemented here, and refused: a weight average (EMA).
"""
from __future__ import annotations

import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import OneCycleLR, StepLR
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from ..engine import RunResult
from ..engine import augment as aug
from ..engine.data import data_root
from ..engine.models import MNIST_MEAN, MNIST_STD, count_parameters, for_step, normalize
from ..engine.train import STREAMS, configure_threads, generator, initial_model, resolve_device
from ..runs import records
from ..runs.runner import Progress, Task, run_tasks, seconds_per_epoch
from ..study.registry import get_step
from ..study.step import Step
from ..study.survival import compare_implementations, implementation_of

IMPLEMENTATION = "notebook"
DEFAULT_OUT = Path("reports/notebook")
TEST_BATCH = 1000  # images per evaluation batch (BatchNorm is in eval mode: the batch size changes nothing)
ENGINE_DETAILS = STREAMS  # what like_engine may take from the engine: "init", "order", "augment", "dropout"


def source_hash() -> str:
    """SHA-256 (first 16 hex digits) of this file: the loop's own code, beside the engine's source_hash."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def refuse_unsupported(step: Step) -> None:
    """Raise ValueError naming every part of `step` this loop does not implement."""
    missing = ["a weight average (ema)"] if step.ema else []
    if missing:
        raise ValueError(f"the notebook trainer does not implement {', '.join(missing)} (step {step.name}); "
                         f"only the engine trains it")


def check_like_engine(like_engine) -> tuple[str, ...]:
    details = tuple(like_engine)
    if unknown := [d for d in details if d not in ENGINE_DETAILS]:
        raise ValueError(f"like_engine takes {', '.join(ENGINE_DETAILS)}; got {', '.join(map(repr, unknown))}")
    return details


def transforms_for(step: Step, augmented: bool, *, saturation: float = 0.0, hue: float = 0.0):
    """The PIL pipeline of one epoch: ColorJitter, then RandomRotation (the engine's order), ToTensor, Normalize.

    saturation, hue: ColorJitter's other two factors, which change nothing in a grey image but still cost their
    time; the public notebooks set them, so the bench times them, and the step leaves them off."""
    a = step.augment
    chain = []
    if augmented and (a.brightness or a.contrast or saturation or hue):
        # On the PIL image, before Normalize: the engine, too, jitters the unnormalised pixels.
        chain.append(transforms.ColorJitter(brightness=a.brightness, contrast=a.contrast, saturation=saturation, hue=hue))
    if augmented and a.rotation:
        chain.append(transforms.RandomRotation(a.rotation, interpolation=transforms.InterpolationMode.NEAREST, fill=0))
    chain += [transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]
    return transforms.Compose(chain)


def mnist(root, train: bool, transform) -> datasets.MNIST:
    """torchvision's MNIST under the data root `root` (never downloaded here: the engine's data.py fetches)."""
    return datasets.MNIST(str(root), train=train, download=False, transform=transform)


def train_loader(data, step: Step, seed: int, device: torch.device, *, order=None, workers: int = 0) -> DataLoader:
    """The notebook's training DataLoader: batches of step.batch_size, shuffled by a generator seeded with `seed`
    (or drawn by the sampler `order`), `workers` loader processes, pinned memory on CUDA as the notebooks set it."""
    # The loader's own generator also seeds its iterator each epoch: given here, the global stream is not drawn.
    return DataLoader(data, batch_size=step.batch_size, shuffle=order is None, sampler=order, num_workers=workers,
                      generator=torch.Generator().manual_seed(seed), pin_memory=device.type == "cuda")


def optimizer(step: Step, model: torch.nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=step.lr, momentum=step.momentum, weight_decay=step.weight_decay)


class EngineOrder(torch.utils.data.Sampler):
    """The engine's data order for `seed`: a permutation per epoch from its "order" generator (train.generator)."""

    def __init__(self, n: int, seed: int):
        self.n, self.generator = n, generator(seed, "order", torch.device("cpu"))

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


class LRSchedule:
    """The step's schedule through torch.optim.lr_scheduler, stepped as the engine's train.learning_rate moves.

    onecycle: OneCycleLR, stepped after every batch, over the first `final_epoch` epochs only, and no more
    after that, so the learning rate stays at its floor ('anneal ends at epoch 10, then flat', which
    OneCycleLR alone cannot say). The engine rises linearly over `rise` iterations and falls over the
    `total - rise` after, reaching the floor at iteration `total`; OneCycleLR reaches its peak at step
    pct_start * total_steps - 1 and its floor at total_steps - 1, hence total_steps = total + 1 and
    pct_start = (rise + 1) / (total + 1). Its final_div_factor divides the *starting* lr (peak / div),
    the engine's final_div the peak. step: StepLR, stepped after every epoch. constant: nothing.
    """

    def __init__(self, step: Step, optimizer: torch.optim.Optimizer, iters_per_epoch: int):
        s = step.schedule
        self.per_batch = self.per_epoch = None
        self.batches_left = 0
        if s.kind == "onecycle":
            total = (s.final_epoch or step.epochs) * iters_per_epoch
            rise = max(1, round(s.warmup * total))
            self.per_batch = OneCycleLR(optimizer, max_lr=step.lr, total_steps=total + 1,
                                        pct_start=(rise + 1) / (total + 1), anneal_strategy="linear",
                                        cycle_momentum=False, div_factor=s.div, final_div_factor=s.final_div / s.div)
            self.batches_left = total
        elif s.kind == "step":
            self.per_epoch = StepLR(optimizer, step_size=s.step_epochs, gamma=s.gamma)
        elif s.kind != "constant":
            raise ValueError(f"unknown schedule kind {s.kind!r}")

    def batch_done(self) -> None:
        if self.per_batch is not None and self.batches_left > 0:
            self.per_batch.step()
            self.batches_left -= 1

    def epoch_done(self) -> None:
        if self.per_epoch is not None:
            self.per_epoch.step()


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy per image, accuracy in percent) over `loader`, the model in eval mode (which applies
    the step's test-time views: models.Net). The loss is taken on what the model returns, as the engine does."""
    model.eval()
    loss = correct = n = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        n += len(y)
    return loss / n, correct / n * 100


def train_notebook(step: Step | str, seed: int = 0, *, data_dir=None, epochs: int | None = None,
                   limit_train: int | None = None, limit_test: int | None = None, threads: int = 1,
                   device: str | torch.device = "cpu", like_engine: tuple[str, ...] = (),
                   on_epoch: Callable[[int, int, dict], None] | None = None) -> RunResult:
    """Train one seed of `step` the notebook way; the same RunResult (hence record) as train.train.

    limit_train / limit_test: the first N images only (a smoke run). like_engine: the details taken from the
    engine instead (the module docstring; a one-change check names one). on_epoch(seed, epoch, row) after each
    epoch. The caller's global RNG state is left as it was: the run's global seed lives in a fork of it.
    """
    step = get_step(step) if isinstance(step, str) else step
    refuse_unsupported(step)
    like_engine = check_like_engine(like_engine)
    epochs = step.epochs if epochs is None else epochs
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    device = resolve_device(str(device))
    records.source_hash(), records.git_state()  # the code's identity now, as train_many reads it
    own_hash = source_hash()
    n_threads = configure_threads(threads)
    # As the engine: on the CPU every op here has a deterministic kernel; on CUDA a few have none.
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")

    root = data_root(data_dir)
    # The engine's augmentation works on a batch of float pixels, normalised after it: the dataset then only
    # turns each image into a tensor.
    batch_augment = "augment" in like_engine
    augmented, clean = transforms_for(step, True), transforms_for(step, False)
    train_set = mnist(root, True, transforms.ToTensor() if batch_augment else augmented)
    test_set = mnist(root, False, clean)
    train_data = Subset(train_set, range(limit_train)) if limit_train else train_set
    test_data = Subset(test_set, range(limit_test)) if limit_test else test_set

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = (initial_model(step, seed) if "init" in like_engine else for_step(step)).to(device)
        if "dropout" in like_engine:
            model.set_dropout_generators([generator(seed, "dropout", device)])
        augment_generator = generator(seed, "augment", device) if batch_augment else None
        params = count_parameters(model)
        order = EngineOrder(len(train_data), seed) if "order" in like_engine else None
        loader = train_loader(train_data, step, seed, device, order=order)
        test_loader = DataLoader(test_data, batch_size=TEST_BATCH, shuffle=False, num_workers=0)
        opt = optimizer(step, model)
        schedule = LRSchedule(step, opt, len(loader))

        n_train, started = len(train_data), time.time()
        result = RunResult(step, seed, params, started=started, engine={
            "device": device.type, "threads": n_threads, "seeds_per_pass": 1, "train_images": n_train,
            "eval_images": len(test_data), "implementation": IMPLEMENTATION, "implementation_source": own_hash,
            **({"like_engine": list(like_engine)} if like_engine else {})})
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            if not batch_augment:
                train_set.transform = augmented if step.augment.active else clean
            model.train()
            loss_sum, correct, lr = 0.0, 0, opt.param_groups[0]["lr"]
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if batch_augment:
                    if step.augment.active:
                        x = aug.apply(x, aug.sample_params(len(x), step.augment, augment_generator, device), step.augment)
                    x = normalize(x)
                lr = opt.param_groups[0]["lr"]
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.batch_done()
                loss_sum += loss.item() * len(y)
                correct += (logits.argmax(1) == y).sum().item()
            schedule.epoch_done()
            train_loss = loss_sum / n_train
            if not math.isfinite(train_loss):
                result.diverged_at = epoch
                break
            test_loss, test_acc = evaluate(model, test_loader, device)
            row = {"epoch": epoch, "train_loss": train_loss, "train_acc": correct / n_train * 100,
                   "test_loss": test_loss, "test_acc": test_acc, "lr": lr, "seconds": time.perf_counter() - t0}
            result.history.append(row)
            if on_epoch:
                on_epoch(seed, epoch, row)
    result.state_dict = {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}
    result.finished = time.time()
    return result


# --- the two implementations side by side -----------------------------------------------------------

def format_comparison(c: dict) -> str:
    """The comparison as a few lines of text."""
    lowest = f"lowest of last {c['last']} ± sd"
    lines = [f"{'':9}  {'n':>2}  {'floor held':>10}  {'final mean ± sd':>16}  {lowest:>22}"]
    for name in ("engine", "notebook"):
        s = c[name]
        held = f"{s['holding_floor']} of {s['n']}"
        lines.append(f"{name:9}  {s['n']:>2}  {held:>10}  {s['final_mean']:>8.3f} ± {s['final_std']:.3f}  "
                     f"{s['lowest_last_mean']:>14.3f} ± {s['lowest_last_std']:.3f}")
    for key, label in (("final", "final accuracy"), ("lowest_last", f"lowest of last {c['last']}")):
        d = c["difference"][key]
        verdict = "beyond noise" if d["beyond_noise"] else "within noise"
        lines.append(f"notebook - engine, {label}: {d['mean']:+.3f} % (95 % Welch CI {d['ci95'][0]:+.3f} to "
                     f"{d['ci95'][1]:+.3f}), {verdict}")
    return "\n".join(lines)


# --- many runs: python -m ablation notebook --steps final --seeds 0-4 --runs reports/notebook -------------

def _run_one(task) -> tuple[str, object]:
    """What a pool worker runs (a fresh interpreter, one thread): ("ok", [encoded record]) or ("error", message)."""
    step, seed = task.step, task.seeds[0]
    progress = Progress(0, f"{step.name} (notebook)", bar=False)
    try:
        # Task.quick carries train_notebook's keywords: the subset sizes, and like_engine where asked.
        result = train_notebook(step, seed, data_dir=task.data_dir, epochs=task.epochs, threads=task.threads,
                                device=task.device, on_epoch=progress.epoch, **task.quick)
        return "ok", [records.encode(result)]
    except Exception as e:  # noqa: BLE001 - named and reported by the driver, not swallowed
        return "error", f"{type(e).__name__}: {e}"


def tasks_for(steps: list[Step], seeds: list[int] | None, *, device: str, epochs: int | None, data_dir, out: Path,
              quick: dict | None = None, like_engine: tuple[str, ...] = ()) -> list[Task]:
    """One Task per step and seed (each step's own seeds unless `seeds`), one thread each. Task.quick carries
    train_notebook's keywords: `quick`'s subset sizes, and like_engine where asked."""
    keywords = {**(quick or {}), **({"like_engine": check_like_engine(like_engine)} if like_engine else {})}
    return [Task(step, [seed], device, epochs, data_dir, 0, 1, keywords, out)
            for step in steps for seed in (seeds or step.seeds)]


def run_all(tasks: list, jobs: int) -> list[str]:
    """Train every task (one seed each), here or in `jobs` spawned processes; write each record as it finishes
    (runner.Tracker: one line per run). Returns the failed runs' errors."""
    # its own committed records say how long the notebook's loop takes (reports/notebook)
    timed = seconds_per_epoch(records.load_all(records.PACKAGE.parent / DEFAULT_OUT))
    return run_tasks(tasks, jobs, entry=_run_one, committed=timed)


def print_comparisons(engine_runs: Path, notebook_runs: Path, steps: list[Step], seeds: list[int] | None) -> int:
    """Print compare_implementations for every step with records of both; 1 when a step has none of either."""
    engine_all, notebook_all = records.load_all(engine_runs), records.load_all(notebook_runs)
    status = 0
    for step in steps:
        pick = lambda recs: [r for r in recs if seeds is None or r["seed"] in seeds]
        engine = [r for r in pick(engine_all.get(step.name, [])) if implementation_of(r) == "engine"]
        notes = [r for r in pick(notebook_all.get(step.name, [])) if implementation_of(r) == IMPLEMENTATION]
        if not engine or not notes:
            print(f"{step.name}: no records of the {'engine' if not engine else 'notebook'} to compare "
                  f"(looked in {engine_runs if not engine else notebook_runs})", file=sys.stderr)
            status = 1
            continue
        print(f"{step.name}: engine seeds {[r['seed'] for r in engine]}, notebook seeds {[r['seed'] for r in notes]}")
        print(format_comparison(compare_implementations(engine, notes, step.goals)) + "\n")
    return status

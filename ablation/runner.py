"""Runs as jobs: train groups of seeds, save their records, show progress; one process per CPU core.

A pool worker is a fresh interpreter (spawn), so what it runs lives here, in an importable module,
not in __main__.
"""
from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from .data import MNIST
from .steps import Step


@dataclass(frozen=True)
class Task:
    """One pass of the engine: `seeds` of `step`, trained together, one record each."""

    step: Step
    seeds: list[int]
    device: str
    epochs: int | None  # None: the step's own
    data_dir: str | None
    holdout: int  # images held out of train as the evaluation set; 0: the test set
    threads: int | None
    quick: dict  # limit_train / limit_test for smoke runs
    out: Path
    fold: int = 0  # which block of `holdout` images is held out (k-fold validation)

    def images(self, data: MNIST) -> int:
        per_epoch = self.quick.get("limit_train") or len(data.train_labels)
        return per_epoch * (self.epochs or self.step.epochs) * len(self.seeds)


class Progress:
    """A tqdm bar over all images of a run on a terminal; one line per epoch otherwise (logs, CI, pool workers)."""

    def __init__(self, total_images: int, label: str, bar: bool = True):
        self.bar = None
        self.label = label
        if bar and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_images, desc=label, unit="img", unit_scale=True, leave=False)

    def batch(self, n: int) -> None:
        if self.bar:
            self.bar.update(n)

    def epoch(self, seed: int, epoch: int, row: dict) -> None:
        text = (f"{self.label} seed {seed} epoch {epoch:2d}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.2f}%"
                f"  test loss {row['test_loss']:.4f} acc {row['test_acc']:.2f}%  lr {row['lr']:.4g}  {row['seconds']:.1f}s")
        if self.bar:
            self.bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar:
            self.bar.close()


def train_and_save(task: Task, data: MNIST | None = None, bar: bool = True) -> list[str]:
    """Train one task and save a record per seed; returns one 'wrote ...' line per record."""
    from . import records
    from .data import load_mnist
    from .train import train_many

    data = data or load_mnist(task.data_dir)
    label = f"{task.step.name} seeds {','.join(map(str, task.seeds))}"
    progress = Progress(task.images(data), label, bar=bar)
    try:
        results = train_many(task.step, task.seeds, device=task.device, epochs=task.epochs, data=data,
                             holdout=task.holdout, fold=task.fold, threads=task.threads,
                             teacher_dirs=[task.out, records.DEFAULT_RUNS], on_epoch=progress.epoch,
                             on_batch=progress.batch, **task.quick)
    finally:
        progress.close()
    return [f"wrote {records.save(r, task.out)} ({r.finished - r.started:.0f} s)" for r in results]


def waves(tasks: list[Task]) -> list[list[Task]]:
    """The tasks in waves that run one after another: a step distilled from a teacher among the tasks runs
    in a wave after all of its teacher's runs, whose records it reads when it starts."""
    names = {task.step.name for task in tasks}
    depth: dict[str, int] = {}

    def level(step: Step) -> int:
        if step.name not in depth:
            teacher = step.distill.teacher if step.distill.active else None
            depth[step.name] = 0
            if teacher in names:
                depth[step.name] = 1 + level(next(t.step for t in tasks if t.step.name == teacher))
        return depth[step.name]

    out: dict[int, list[Task]] = {}
    for task in tasks:
        out.setdefault(level(task.step), []).append(task)
    return [out[k] for k in sorted(out)]


def run_tasks(tasks: list[Task], jobs: int, data: MNIST | None = None) -> list[str]:
    """Run every task, wave by wave, `jobs` at a time in worker processes (or here, when jobs is 1).
    Returns the errors of tasks whose teacher could not be found; the other tasks still run.

    On a CPU, one single-thread process per core beats one process using every core (small
    convolutions scale poorly across threads), and the thread count, hence every result, stays the
    same whatever the job count.
    """
    from .distill import TeacherError

    errors = []

    def report(finished) -> None:  # a missing teacher fails its own task only
        try:
            print("\n".join(finished()), file=sys.stderr, flush=True)
        except TeacherError as e:
            errors.append(str(e))

    for wave in waves(tasks):
        jobs = max(1, min(jobs, len(wave)))
        if jobs == 1:
            for task in wave:
                report(lambda: train_and_save(task, data))
            continue
        print(f"training {len(wave)} runs in {jobs} processes; one line per epoch", file=sys.stderr, flush=True)
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(train_and_save, task, None, False) for task in wave]
            try:
                for future in as_completed(futures):
                    report(future.result)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return errors

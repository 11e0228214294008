"""Runs as jobs: train groups of seeds, save their records, show progress, on one of two backends.

A unit of work is a `Task` (one step and one or more seeds trained in one pass, on the test set or a
held-out fold). Both backends run the same `train_task` and hand back what goes to disk; the driver,
this process, writes every record as its task finishes, so a record is written once, by one process,
in the same bytes whichever backend trained it:

- "process" (the default): a pool of worker processes on this machine, one per CPU core;
- "ray": Ray tasks on a local Ray or a cluster (ray_backend.py), for many machines or GPUs.

A pool worker is a fresh interpreter (spawn), so what it runs lives here, in an importable module,
not in __main__.
"""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path

from ..engine.data import MNIST, TRAIN_LABEL_COUNTS
from ..study.screen import views_only
from ..study.step import Step, registered_name
from ..study.survival import record_generation
from . import records

TEST_IMAGES = 10_000


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
    # Steps that differ from `step` only in their test-time views: evaluated on this training, not trained again
    # (train.train_many's views); a record each, too.
    views: tuple[Step, ...] = ()

    @property
    def runs(self) -> int:
        """The records this task writes."""
        return len(self.seeds) * (1 + len(self.views))

    def images(self, data: MNIST) -> int:
        per_epoch = self.quick.get("limit_train") or len(data.train_labels)
        return per_epoch * (self.epochs or self.step.epochs) * len(self.seeds)

    def describe(self) -> str:
        fold = f" (fold {self.fold})" if self.holdout else ""
        views = f" (and {', '.join(v.name for v in self.views)} on its training)" if self.views else ""
        return f"{self.step.name} seed{'s' if len(self.seeds) > 1 else ''} {','.join(map(str, self.seeds))}{fold}{views}"

    def images_per_epoch(self) -> int:
        """Training plus evaluated images of one epoch (what an epoch's seconds grow with)."""
        train = self.quick.get("limit_train") or sum(TRAIN_LABEL_COUNTS) - self.holdout
        return train + (self.quick.get("limit_test") or self.holdout or TEST_IMAGES)


def training_units(todo: list[tuple[Step, list[int]]]) -> list[tuple[Step, list[int], tuple[Step, ...]]]:
    """(step, seeds, views) to train, from each step's seeds to train in `todo` (in order): a step whose recipe is
    another listed step's but for its test-time views (VIEW_FIELDS; its parent, or its parent's host) is trained
    once with it, as one of its views, for every seed both are to train, and alone for the rest. Steps made
    with --set keep their step's parent ('18-shifted-views[lr=0.1]' rides on '12-wide-end[lr=0.1]')."""
    listed = {registered_name(step.name): step for step, _ in todo}

    def host(step: Step) -> Step | None:
        parent = listed.get(step.parent) if step.parent else None
        if parent is None or not views_only(parent, step):
            return None
        return host(parent) or parent

    riders: dict[str, list[Step]] = {}
    for step, _ in todo:
        if (h := host(step)) is not None:
            riders.setdefault(h.name, []).append(step)
    alone = {step.name: list(seeds) for step, seeds in todo}
    views_of: dict[tuple[str, int], tuple[Step, ...]] = {}  # (host, seed): the riders trained on it
    for step, seeds in todo:
        for seed in seeds:
            views_of[step.name, seed] = tuple(r for r in riders.get(step.name, []) if seed in alone[r.name])
            for r in views_of[step.name, seed]:
                alone[r.name].remove(seed)
    units = []
    for step, _ in todo:
        by_views: dict[tuple[Step, ...], list[int]] = {}
        for seed in alone[step.name]:
            by_views.setdefault(views_of.get((step.name, seed), ()), []).append(seed)
        units += [(step, seeds, views) for views, seeds in by_views.items()]
    return units


def seconds_per_epoch(found: dict[str, list[dict]]) -> dict[str, tuple[float, int, str]]:
    """{step: (mean seconds of an epoch, images per epoch, the CPU's name)} over the CPU records in `found`
    (one seed a pass; today's engine generation's where a step has any, as an older engine ran at another
    speed), to say up front how long a batch of tasks will take."""
    out = {}
    for name, recs in found.items():
        recs = [r for r in recs if record_generation(r) == records.GENERATION] or recs
        rows = [(row["seconds"], r["provenance"]) for r in recs for row in r["history"]
                if r["provenance"].get("device", "cpu") == "cpu" and r["provenance"].get("seeds_per_pass", 1) == 1
                and "seconds" in row and "train_images" in r["provenance"]]
        if rows:
            p = rows[0][1]
            out[name] = (sum(s for s, _ in rows) / len(rows), p["train_images"] + p["eval_images"], p.get("device_name", "?"))
    return out


def estimate(tasks: list[Task], processes: int, measured: dict[str, tuple[float, int, str]]) -> str:
    """How long `tasks` will take on `processes` CPU processes (0: on Ray's, a number not known here), from the
    seconds per epoch of the records in `measured` (seconds_per_epoch) of each task's step (a variant's: its
    step's), scaled to the task's images per epoch; the tasks dealt out longest first to the least loaded
    process, as a pool roughly does."""
    base = lambda step: registered_name(step.name)
    known, unknown = [], sorted({t.step.name for t in tasks if base(t.step) not in measured})
    for t in tasks:
        if (m := measured.get(base(t.step))) and t.device == "cpu":
            seconds, images, _ = m
            # a view step evaluated on this training adds what its own runs took beyond the step's
            seconds += sum(max(0.0, measured[base(v)][0] - seconds) for v in t.views if base(v) in measured)
            known.append(seconds * t.images_per_epoch() / images * (t.epochs or t.step.epochs) * len(t.seeds))
    if not known:
        return "no estimate of the time (no committed CPU records of these steps)"
    loads = [0.0] * max(1, processes)
    for seconds in sorted(known, reverse=True):
        loads[loads.index(min(loads))] += seconds
    wall = max(loads)
    took = f"{wall / 3600:.1f} h" if wall >= 5400 else f"{wall / 60:.0f} min" if wall >= 90 else f"{max(1, round(wall))} s"
    what = "of wall time" if processes > 0 else "of training in all, spread over the CPUs Ray has"
    cpus = sorted({m[2] for m in measured.values()})
    text = f"about {took} {what}, estimated from the committed records' seconds per epoch ({', '.join(cpus)})"
    return text + (f"; no estimate for {', '.join(unknown)}" if unknown else "")


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


def train_task(task: Task, data: MNIST | None = None, bar: bool = True) -> list[tuple[dict, bytes]]:
    """Train one task; return (record, weights' bytes) per seed, for the driver to write (records.write)."""
    # Read when called: the tests put a fake engine in their place.
    from ..engine.data import load_mnist
    from ..engine.train import train_many

    data = data or load_mnist(task.data_dir)
    progress = Progress(task.images(data), task.step.name, bar=bar)
    try:
        results = train_many(task.step, task.seeds, device=task.device, epochs=task.epochs, data=data,
                             holdout=task.holdout, fold=task.fold, threads=task.threads, on_epoch=progress.epoch,
                             on_batch=progress.batch, views=task.views, **task.quick)
    finally:
        progress.close()
    return [records.encode(r) for r in results]


@dataclass
class Tracker:
    """The driver's side of a batch of tasks: writes each finished task's records, prints one line per run with
    done/total and the time left, names failed tasks, says what an interrupt lost, and ends with a recap of the
    batch (what was written, every task that failed, every task Ray had to retry)."""

    tasks: list[Task]
    started: float = field(default_factory=time.monotonic)
    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    settled: set = field(default_factory=set)  # id() of the tasks that finished or failed

    @property
    def total(self) -> int:
        return sum(t.runs for t in self.tasks)

    def finished(self, task: Task, encoded: list[tuple[dict, bytes]], where: str = "", retries: int = 0) -> None:
        """`retries`: how often the task was started again before this try finished (Ray, after a worker died)."""
        self.settled.add(id(task))
        if retries:
            self.retried.append(f"{task.describe()} retried: written by attempt {retries + 1} (its worker was lost "
                                f"{retries} time{'s' * (retries > 1)}){where}")
        for record, weights in encoded:
            path = records.write(record, weights, task.out)
            self.written.append(path)
            last, wall = record["history"][-1] if record["history"] else {}, record["provenance"]["wall_seconds"]
            accuracy = "diverged" if record["diverged_at"] is not None else f"final {last.get('test_acc', float('nan')):.2f} %"
            attempt = f", attempt {retries + 1}" if retries else ""
            print(f"[{len(self.written)}/{self.total}] {record['step']} seed {record['seed']}: {accuracy}, "
                  f"{wall:.0f} s{where}{attempt}; {self.eta()} -> {path}", file=sys.stderr, flush=True)

    def failed(self, task: Task, error: BaseException | str) -> None:
        self.settled.add(id(task))
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.errors.append(f"{task.describe()} failed: {text}")
        print(f"error: {self.errors[-1]}", file=sys.stderr, flush=True)

    def eta(self) -> str:
        done = sum(t.runs for t in self.tasks if id(t) in self.settled)
        left = self.total - done
        if not left:
            return "all done"
        elapsed = time.monotonic() - self.started
        return f"about {elapsed / max(done, 1) * left / 60:.0f} min left"

    def lost(self) -> list[str]:
        return [t.describe() for t in self.tasks if id(t) not in self.settled]

    def interrupted(self) -> None:
        lost = self.lost()
        print(f"interrupted: {len(self.written)} record(s) written and kept"
              + (f"; not written (queued or in progress): {'; '.join(lost)}" if lost else ""), file=sys.stderr, flush=True)
        if self.errors or self.retried:
            self.recap()

    def recap(self) -> None:
        """The batch at a glance, after the per-run lines have scrolled by: one line, then one per failed or
        retried task."""
        seconds = time.monotonic() - self.started
        took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
        counts = [f"{len(self.errors)} task{'s' * (len(self.errors) != 1)} failed"] * bool(self.errors)
        counts += [f"{len(self.retried)} retried"] * bool(self.retried)
        print(f"recap: {len(self.written)} of {self.total} runs written in {took}; "
              + (", ".join(counts) + ":" if counts else "none failed"), file=sys.stderr, flush=True)
        for line in self.errors + self.retried:
            print(f"  {line}", file=sys.stderr, flush=True)


def _pool_entry(task: Task) -> tuple[str, object]:
    """What a pool worker runs: ("ok", encoded records) or ("error", message): a task's own failure (bad
    arguments, say) is reported by the driver while the other tasks go on."""
    try:
        return "ok", train_task(task, None, False)
    except Exception as e:  # noqa: BLE001 - named and reported by the driver, not swallowed
        return "error", f"{type(e).__name__}: {e}"


def _ignore_interrupts() -> None:
    # Ctrl-C reaches every process of the terminal's group: workers leave it to the driver, which stops them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _indexed(entry, item: tuple[int, Task]) -> tuple[int, str, object]:
    index, task = item
    return (index, *entry(task))


def run_pool(tasks: list[Task], jobs: int, tracker: Tracker, entry=_pool_entry) -> None:
    """The tasks in `jobs` worker processes, each task through `entry` (a module-level function returning ("ok",
    encoded records) or ("error", message); notebook.py passes its trainer's); on Ctrl-C the queued tasks are
    dropped and the running ones stopped."""
    print(f"training {len(tasks)} runs in {jobs} processes; one line per epoch", file=sys.stderr, flush=True)
    pool = get_context("spawn").Pool(jobs, initializer=_ignore_interrupts)
    try:
        for index, status, value in pool.imap_unordered(partial(_indexed, entry), list(enumerate(tasks))):
            if status == "ok":
                tracker.finished(tasks[index], value)
            else:
                tracker.failed(tasks[index], value)
        pool.close()
    except BaseException:
        pool.terminate()  # the workers are stopped, not waited for: what they were training is lost, nothing half-written
        raise
    finally:
        pool.join()


def run_here(tasks: list[Task], tracker: Tracker, data: MNIST | None, entry=None) -> None:
    """The tasks in this process: the engine on `data` (with a progress bar), or each task through `entry`."""
    for task in tasks:
        if entry is not None:
            status, value = entry(task)
            tracker.finished(task, value) if status == "ok" else tracker.failed(task, value)
            continue
        try:
            encoded = train_task(task, data)
        except Exception as e:  # noqa: BLE001 - the task is named; the others go on
            tracker.failed(task, e)
            continue
        tracker.finished(task, encoded)


def how_long(tasks: list[Task], processes: int, committed: dict[str, tuple[float, int, str]] | None = None) -> str:
    """'20 runs: about 26 min of wall time, ...': what `tasks` write and their estimate, from the committed
    study's records (reports/runs beside the package) unless `committed` (seconds_per_epoch) is given."""
    if committed is None:
        committed = seconds_per_epoch(records.load_all(records.PACKAGE.parent / records.DEFAULT_RUNS))
    runs = sum(t.runs for t in tasks)
    return f"{runs} run{'s' * (runs != 1)}: {estimate(tasks, processes, committed)}"


def run_tasks(tasks: list[Task], jobs: int, data: MNIST | None = None, run_elsewhere=None, entry=None,
              committed: dict[str, tuple[float, int, str]] | None = None) -> list[str]:
    """Run every task and write their records as they finish; return the failed tasks' errors
    (each names its step and seeds; the other tasks still run).

    By default `jobs` worker processes at a time (or here, when jobs is 1). On a CPU, one single-thread
    process per core beats one process using every core (small convolutions scale poorly across threads), and
    the thread count, hence every result, stays the same whatever the job count. `run_elsewhere(tasks,
    tracker, data)` runs them elsewhere instead (ray_backend.run_tasks passes Ray's); `entry` trains each task
    with another trainer (run_pool's; notebook.py passes its own).
    """
    tracker = Tracker(tasks)
    print(how_long(tasks, jobs, committed), file=sys.stderr, flush=True)
    try:
        if run_elsewhere is not None:
            run_elsewhere(tasks, tracker, data)
        elif max(1, min(jobs, len(tasks))) == 1:
            run_here(tasks, tracker, data, entry)
        else:
            run_pool(tasks, min(jobs, len(tasks)), tracker, entry or _pool_entry)
    except KeyboardInterrupt:
        tracker.interrupted()
        raise
    tracker.recap()
    return tracker.errors

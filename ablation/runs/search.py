"""A recipe search: `python -m ablation search STEP` asks Optuna for trials of a declared space (study/spaces.py)
and trains each one with the engine, on held-out data, as a registry variant with its own records.

Why Optuna, and not Ray Tune (issue 31; figures in the closing note of the issue):
- it is a library driven by ask/tell around our own trainer and records: a trial is `study.ask()`, one
  `engine.train.train_many` pass and `study.tell(value)`, its records written by records.py as `run --holdout`
  writes them; Ray Tune brings its own trial runner, results folders, pandas and pyarrow (about 160 MB);
- its journal-file storage (journal.py) makes a search resumable and shared between processes, or Ray workers
  that see the folder, with no server;
- its pruners stop a hopeless trial at an epoch. We use `MedianPruner`: from epoch PRUNE_AFTER on, a trial whose
  held-out accuracy at an epoch is below the median of the finished trials' at the same epoch is stopped. It
  judges a trial only against trials at the same epoch and needs no rungs, and its warm-up spares the recipes
  whose slow start is the point (a later end of the anneal looks worse mid-way and ends better), where successive
  halving would stop two thirds at every rung of a search of a few dozen trials.

The split (study/spaces.py): every trial trains SEARCH_SEEDS in one pass on the training set less held-out fold
SEARCH_FOLD and is scored on that fold; the test set never reaches the search, which hands the engine a data set
without it (`training_data`). The screen that decides whether a found recipe becomes a step runs the screen's own
seed over six folds (`python -m ablation screen STEP --set ...`): seeds the search did not select on.

The objective is the mission's criterion on held-out data: the lowest accuracy of the last 5 epochs, over the
search seeds (spaces.objective), maximised. Each epoch the pruner is told the lowest of the seeds' held-out
accuracies at that epoch. A pruned trial writes no record (a record is a whole run); its user attributes say at
which epoch it stopped, and the journal keeps its per-epoch values.

The parameter budget is a hard constraint: a trial's network is built and counted before anything trains, and one
over the budget is told PRUNED with no value (TPE then ranks it below every trained trial, so the sampler learns to
avoid it), its count in the user attribute `over_budget`. It never trains.

Every trial trained is a variant folder of records under --out, beside the journal. Resuming is running the same
command again: --trials is the study's total of trained trials (a draw over the budget is refused in under a second
and does not count), so it runs what is left. A trial left RUNNING by a process that was killed or interrupted is
told FAIL and its values queued again (`enqueue_trial`), by the interrupted process where it can, else by the next
command on the folder; so one command at a time per folder. A trial whose records
already exist complete for its values (records.reuse) is scored from them, not trained again.

Backends: in this process (--jobs 1), a pool of --jobs worker processes, or --backend ray: each trial one call of
`run_trial`, which asks, trains and tells against the shared journal. On a local Ray the journal file is
shared; a cluster needs --out on a filesystem every node sees (the workers write the records and the journal).
"""
from __future__ import annotations

import math
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path

from ..engine import train as training  # through the module: tests replace train_many
from ..engine.data import MNIST, load_mnist_checked
from ..study.registry import with_overrides
from ..study.spaces import SEARCH_FOLD, SEARCH_SEEDS, Space, assignments, objective, registered_values, suggest
from ..study.step import Step
from . import journal, records

DEFAULT_OUT = Path("reports/search")
SAMPLER_SEED = 31  # the TPE sampler's first; each call of run_trial draws with its own (search), so no two draw alike
STARTUP_TRIALS = 10  # TPE draws at random until this many trials are finished
PRUNE_AFTER = 7  # epochs: the pruner judges no earlier epoch (the one-cycle schedules differ most before it)
PRUNE_STARTUP = 5  # ... and no trial before this many have finished
# A call of run_trial draws until a trial fits the budget (an over-budget draw costs a network built and counted,
# under a second) and trains that one; this many refusals in a row end it: the space is mostly over the budget.
MAX_REFUSALS = 50
NEXT_SEED = "next_sampler_seed"  # the study's user attribute: the first sampler seed the next command may use


@dataclass(frozen=True)
class Search:
    """What every trial of one search shares (pickled to each pool worker and Ray task)."""

    step: Step
    space: Space
    out: Path
    max_params: int  # parameters; a trial over it is never trained
    holdout: int = 10_000  # images held out of the training set, fold SEARCH_FOLD: what a trial is scored on
    epochs: int | None = None  # None: the step's own (a --quick search trains 2)
    quick: dict = field(default_factory=dict)  # limit_train / limit_test of a --quick search
    data_dir: str | None = None
    threads: int | None = None
    device: str = "cpu"
    fold: int = SEARCH_FOLD
    seeds: tuple[int, ...] = SEARCH_SEEDS

    def settings(self) -> dict:
        """What a study in the folder must have been made with for this command to continue it."""
        return {"step": self.step.name, "space": self.space.name, "max_params": self.max_params,
                "holdout": self.holdout, "fold": self.fold, "seeds": list(self.seeds), "epochs": self.epochs,
                "quick": dict(sorted(self.quick.items()))}


class Pruned(Exception):
    """Raised from the engine's on_epoch to stop a trial the pruner gave up on."""

    def __init__(self, epoch: int):
        super().__init__(f"pruned at epoch {epoch}")
        self.epoch = epoch


def training_data(data_dir: str | None = None) -> MNIST:
    """MNIST's training set, with an empty test set: all a search has, so it cannot read the test set. (The engine
    evaluates on the held-out fold it splits off the training set.)"""
    return without_test_set(load_mnist_checked(data_dir))


def without_test_set(data) -> MNIST:
    images, labels = data.train_images, data.train_labels  # only these two are read
    return MNIST(images, labels, images[:0], labels[:0])


_DATA: dict = {}  # a pool worker's training data, loaded once per process


def _data_for(search: Search) -> MNIST:
    if search.data_dir not in _DATA:
        _DATA[search.data_dir] = training_data(search.data_dir)
    return _DATA[search.data_dir]


def parameters(step: Step) -> int:
    """The parameters of `step`'s network, built and counted (the global RNG left as it was)."""
    import torch

    from ..engine.models import count_parameters, for_step

    with torch.random.fork_rng(devices=[]):
        return count_parameters(for_step(step))


# --- the study --------------------------------------------------------------------------------------------------

def open_study(search: Search, sampler_seed: int = SAMPLER_SEED, create: bool = False):
    """The search's study in --out with a TPE sampler (seeded) and the median pruner; with `create`, made if new
    and checked to be this search's (ValueError naming what differs)."""
    optuna = journal.import_optuna()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # constant_liar's, every trial
    # constant_liar: a trial still running counts as a poor one, so parallel workers do not all draw near the same point
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=STARTUP_TRIALS, constant_liar=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP, n_warmup_steps=PRUNE_AFTER)
    if not create:
        return optuna.load_study(study_name=journal.STUDY, storage=journal.storage(search.out), sampler=sampler,
                                 pruner=pruner)
    study = optuna.create_study(study_name=journal.STUDY, storage=journal.storage(search.out), sampler=sampler,
                                pruner=pruner, direction="maximize", load_if_exists=True)
    made = study.user_attrs.get("settings")
    if made is None:
        study.set_user_attr("settings", search.settings())
    elif made != search.settings():
        differ = ", ".join(f"{k} {made.get(k)!r} there, {v!r} here" for k, v in search.settings().items() if made.get(k) != v)
        raise ValueError(f"--out {search.out} holds another search ({differ}): give this one its own --out")
    return study


def requeue(study, trial, search: Search) -> None:
    """`trial`, cut short: told FAIL, and its values queued again for the next trial to take (the step's own recipe
    as such, with its values even when it was cut short before it drew them)."""
    study.tell(trial.number, state=journal.import_optuna().trial.TrialState.FAIL)
    baseline = {journal.AS_REGISTERED: True} if trial.user_attrs.get(journal.AS_REGISTERED) else {}
    values = registered_values(search.step, search.space) if baseline else trial.params
    study.enqueue_trial(values, user_attrs={"requeued_from": trial.number, **baseline})


def requeue_stale(study, search: Search) -> list[int]:
    """Trials left RUNNING by a process that is gone (killed, or a pool worker stopped by Ctrl-C): failed and queued
    again. Called before a command starts its own trials, so every RUNNING trial then is another process's."""
    stale = study.get_trials(deepcopy=False, states=(journal.import_optuna().trial.TrialState.RUNNING,))
    for t in stale:
        requeue(study, t, search)
    return [t.number for t in stale]


def queue_as_registered(study, search: Search) -> None:
    """Queue the step's own recipe as a trial, once per study (a study begun without it gets it when continued): the
    baseline every other trial is read against, on the same seeds, fold and objective."""
    values = registered_values(search.step, search.space)
    if values is not None and not any(t.user_attrs.get(journal.AS_REGISTERED) for t in study.get_trials(deepcopy=False)):
        study.enqueue_trial(values, user_attrs={journal.AS_REGISTERED: True})


def finished(study) -> int:
    """The trials that count towards --trials: those trained (complete, pruned, failed), not those refused over the
    budget nor those cut short (run again)."""
    return sum(r["outcome"] in journal.TRAINED for r in journal.rows(study))


# --- one trial: what every backend runs ---------------------------------------------------------------------

class EpochReporter:
    """The engine's on_epoch: tells the pruner, per epoch, the lowest held-out accuracy over the seeds, and stops
    the training (Pruned) when the pruner says so."""

    def __init__(self, trial, seeds: tuple[int, ...], say=None):
        self.trial, self.seeds, self.say, self.rows = trial, seeds, say, {}

    def __call__(self, seed: int, epoch: int, row: dict) -> None:
        got = self.rows.setdefault(epoch, {})
        got[seed] = row["test_acc"]  # the engine's "test" is the held-out fold here: the search has no test set
        if len(got) < len(self.seeds):  # a seed that diverged never completes its epoch: nothing is told for it
            return
        lowest = min(got.values())
        self.trial.report(lowest, epoch)
        if self.say:
            self.say(f"trial {self.trial.number} epoch {epoch}: lowest held-out accuracy over the seeds {lowest:.2f} %")
        if self.trial.should_prune():
            raise Pruned(epoch)


def run_trial(search: Search, sampler_seed: int, data: MNIST | None = None, say=None) -> list[dict]:
    """One trained trial: trials asked of the study until one fits the budget (each refused one told so), then that
    one trained, or scored from its records; what the progress lines show of each (one_trial)."""
    study, done = open_study(search, sampler_seed), []
    while len(done) < MAX_REFUSALS and (not done or done[-1]["outcome"] == "over budget"):
        done.append(one_trial(study, search, data, say))
    return done


def one_trial(study, search: Search, data: MNIST | None = None, say=None) -> dict:
    """Ask the study for a trial, refuse it (over budget), score it from its records or train it, and tell the study;
    return what the progress line shows: number, outcome, value, set, params, pruned_at, seconds."""
    state = journal.import_optuna().trial.TrialState
    trial = study.ask()
    started = time.monotonic()
    shown: list[str] = []
    result = {"number": trial.number, "value": None, "params": None, "pruned_at": None}

    def told(outcome: str, value: float | None = None, as_state=None) -> dict:
        study.tell(trial, value, state=as_state)
        return {**result, "outcome": outcome, "value": value, "set": shown,
                "seconds": time.monotonic() - started}

    try:
        overrides, shown = assignments(search.step, suggest(trial, search.space))
        trial.set_user_attr("set", shown)
        variant = with_overrides(search.step, overrides)
        trial.set_user_attr("variant", variant.name)
        result["params"] = count = parameters(variant)
        trial.set_user_attr("params", count)
        if count > search.max_params:
            trial.set_user_attr("over_budget", count)
            return told("over budget", as_state=state.PRUNED)
        found = reused(search, variant)
        if found is not None:
            trial.set_user_attr("reused", True)
            result["reused"] = True
            return told("complete", objective([r["history"] for r in found], any(r["diverged_at"] for r in found)))
        try:
            results = training.train_many(variant, list(search.seeds), device=search.device, epochs=search.epochs,
                                          data=data or _data_for(search), holdout=search.holdout, fold=search.fold,
                                          threads=search.threads, on_epoch=EpochReporter(trial, search.seeds, say),
                                          **search.quick)
        except Pruned as p:
            result["pruned_at"] = p.epoch
            trial.set_user_attr("pruned_at", p.epoch)
            return told("pruned", as_state=state.PRUNED)
        written = [records.encode(r) for r in results]
        for record, weights in written:
            records.write(record, weights, search.out)
        # scored from the records as written (six decimals), as a trial scored from them later is
        found = [record for record, _ in written]
        return told("complete", objective([r["history"] for r in found], any(r["diverged_at"] for r in found)))
    except KeyboardInterrupt:
        requeue(study, trial, search)
        raise
    except Exception as e:  # noqa: BLE001 - a trial's own failure (a value the step refuses, say) is told and shown
        trial.set_user_attr("error", f"{type(e).__name__}: {e}")
        return {**told("failed", as_state=state.FAIL), "error": f"{type(e).__name__}: {e}"}


def reused(search: Search, variant: Step) -> list[dict] | None:
    """The variant's records under --out when every search seed's is what training it again would remake (never a
    --quick run's: records.reuse); else None."""
    todo, kept, _ = records.resume(search.out, variant, list(search.seeds), holdout=search.holdout, fold=search.fold,
                                   epochs=search.epochs)
    if todo:
        return None
    return [records.load(records.record_paths(search.out, variant.name, seed)[0]) for seed in kept]


# --- the backends -------------------------------------------------------------------------------------------------

def _ignore_interrupts() -> None:
    # Ctrl-C reaches every process of the terminal's group: pool workers leave it to the driver, which stops them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_trial(search: Search, sampler_seed: int) -> tuple[str, object]:
    try:
        return "ok", run_trial(search, sampler_seed)
    except Exception as e:  # noqa: BLE001 - the driver names it; the other trials go on
        return "error", f"{type(e).__name__}: {e}"


def _ray_trial(search: Search, sampler_seed: int, arrays: tuple) -> list[dict]:
    import torch

    # The object store hands out read-only arrays of the training set only; a copy gives the engine plain tensors.
    images, labels = (torch.from_numpy(a.copy()) for a in arrays)
    return run_trial(search, sampler_seed, MNIST(images, labels, images[:0], labels[:0]))


def trials_here(search: Search, seeds: list[int], data: MNIST, show) -> None:
    for seed in seeds:
        show(run_trial(search, seed, data, say=lambda line: print(line, file=sys.stderr, flush=True)))


def trials_in_pool(search: Search, seeds: list[int], jobs: int, show) -> None:
    pool = get_context("spawn").Pool(jobs, initializer=_ignore_interrupts)
    try:
        for status, value in pool.imap_unordered(partial(_pool_trial, search), seeds):
            show(value if status == "ok" else [{"outcome": "error", "error": value}])
        pool.close()
    except BaseException:
        pool.terminate()  # its trials are left RUNNING in the journal: the next command queues them again
        raise
    finally:
        pool.join()


def trials_on_ray(search: Search, seeds: list[int], data: MNIST, show, address: str | None, jobs: int | None) -> None:
    from . import ray_backend

    ray = ray_backend.connect(address, jobs)
    arrays = ray.put(tuple(t.cpu().numpy() for t in (data.train_images, data.train_labels)))
    remote = ray.remote(_ray_trial)
    # A trial asks the study for its values when it starts, not when submitted: submitting them all at once is fine.
    pending = [remote.options(num_cpus=1, max_retries=0).remote(search, seed, arrays) for seed in seeds]
    print(f"submitted {len(pending)} trials to {f'Ray at {address}' if address else 'a local Ray'} "
          f"({ray.cluster_resources().get('CPU', 0):g} CPUs)", file=sys.stderr, flush=True)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                show(ray.get(done[0]))
            except ray.exceptions.RayError as e:
                show([{"outcome": "error", "error": str(e).strip().splitlines()[-1]}])
    except BaseException:
        for ref in pending:  # Ctrl-C: nothing more trains; what was told stays in the journal
            ray.cancel(ref, force=True)
        raise


# --- the command ----------------------------------------------------------------------------------------------

@dataclass
class Progress:
    """One line per finished trial: trials trained of --trials, this one's outcome, the best so far, the time left."""

    study: object
    total: int
    done: int
    started: float = field(default_factory=time.monotonic)
    here: int = 0  # calls of run_trial finished by this command

    def __call__(self, found: list[dict]) -> None:
        self.here += 1
        for r in found:
            self.done += r["outcome"] in journal.TRAINED
            self.line(r)
        if found[-1]["outcome"] == "over budget":
            print(f"{len(found)} draws in a row were over the budget: is the space mostly over --max-params?",
                  file=sys.stderr, flush=True)

    def line(self, r: dict) -> None:
        what = {"complete": lambda: f"{r['value']:.2f} %" + (" (from its records)" if r.get("reused") else ""),
                "pruned": lambda: f"pruned at epoch {r['pruned_at']}",
                "over budget": lambda: f"over budget: {r['params']:,} params",
                "failed": lambda: f"failed: {r.get('error')}",
                "error": lambda: f"error: {r.get('error')}"}[r["outcome"]]()
        number = f"trial {r['number']}" if "number" in r else "a trial"
        # a refusal changes neither the best nor the time left: its line stays short
        after = "" if r["outcome"] == "over budget" else f"; {self.best()}; {self.left()}"
        print(f"[{self.done}/{self.total}] {number}: {what} {' '.join(r.get('set', []))}".rstrip() + after,
              file=sys.stderr, flush=True)

    def best(self) -> str:
        top = journal.best(journal.rows(self.study))
        if not top:
            return "no trial complete yet"
        b = top[0]
        return f"best {b['value']:.2f} % (trial {b['number']}: {' '.join(b['set'])})"

    def left(self) -> str:
        left = self.total - self.done
        if left <= 0:
            return "all done"
        seconds = (time.monotonic() - self.started) / max(self.here, 1) * left
        return f"about {seconds / 60:.0f} min left" if seconds >= 90 else f"about {math.ceil(seconds)} s left"


def search(s: Search, trials: int, *, jobs: int = 1, backend: str = "process", address: str | None = None,
           data: MNIST | None = None) -> int:
    """Run the search until the study holds `trials` finished trials; 0, or 130 after a Ctrl-C (what is done stays)."""
    records.probe_output(s.out)
    study = open_study(s, create=True)
    for number in requeue_stale(study, s):
        print(f"trial {number} was left running by an earlier command: failed and queued again", file=sys.stderr)
    # Each call of run_trial seeds the sampler anew; each command takes the next block of seeds, kept in the study,
    # so that no call draws with an earlier one's seed (a count of trials would not do: a call that takes a queued
    # trial makes none). A study from before the block was kept starts after twice its trials, a safe margin.
    first = study.user_attrs.get(NEXT_SEED, SAMPLER_SEED + 2 * len(study.get_trials(deepcopy=False)))
    queue_as_registered(study, s)
    progress = Progress(study, trials, finished(study))
    todo = trials - progress.done
    study.set_user_attr(NEXT_SEED, first + max(todo, 0))
    print(f"search {s.step.name}, space {s.space.name} ({len(s.space.dimensions)} dimensions), ≤ {s.max_params:,} params, "
          f"held-out fold {s.fold} of {s.holdout:,} images, seeds {', '.join(map(str, s.seeds))}: {progress.done} of "
          f"{trials} trials done, {max(todo, 0)} to run, in {s.out}", file=sys.stderr, flush=True)
    if todo <= 0:
        print(progress.best(), file=sys.stderr)
        return 0
    seeds = list(range(first, first + todo))
    try:
        if backend == "ray":
            trials_on_ray(s, seeds, data or training_data(s.data_dir), progress, address, jobs)
        elif jobs > 1:
            trials_in_pool(s, seeds, min(jobs, todo), progress)
        else:
            trials_here(s, seeds, data or training_data(s.data_dir), progress)
    except KeyboardInterrupt:
        print(f"interrupted: {finished(study)} of {trials} trials done in {s.out}; run the same command again to "
              f"continue (a trial cut short is queued again)", file=sys.stderr, flush=True)
        return 130
    print(f"done: {finished(study)} of {trials} trials; {progress.best()}", file=sys.stderr, flush=True)
    return 0

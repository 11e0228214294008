"""Fresh runs against the committed study: per step and seed, do they agree, and how?

Each fresh record is paired with the committed record of the same step, seed and config, and the pair
is one of:

- bit-identical: the same history (wall times aside) and the same final weights;
- differs on the same set-up: the engine generation (tests/golden), libraries, device, its model, thread
  count and pass layout are the same, so the promise of bit-identity applies, and the run broke it (a defect);
- other set-up: one of those differs (named); floating-point sums may then go another way, so the fresh
  run is another sample of the step's distribution, set against the committed seeds' mean and sd;
- no committed record: nothing to compare with (another seed, a variant).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from ..study.analysis import at_least, lowest_of_last, meets, text_table
from ..study.registry import STEPS
from ..study.step import changed_run_fields
from ..study.survival import named_misses, record_generation, setup_words
from . import machine, records

# What has to agree, besides the engine itself, for a run to be promised bit-identical to another.
SAME_SETUP_KEYS = ("torch", "torchvision", "device", "device_name", "threads", "seeds_per_pass",
                   "train_images", "eval_images")

IDENTICAL, DIFFERENT, OTHER_SETUP, UNPAIRED = ("bit-identical", "differs on the same set-up", "other set-up",
                                               "no committed record")


@dataclass(frozen=True)
class Pair:
    step: str
    seed: int
    relation: str
    fresh_final: float | None
    fresh_lowest: float | None  # lowest test accuracy of the last N epochs (the mission's criterion)
    fresh_met: bool
    committed_final: float | None = None
    committed_lowest: float | None = None
    committed_met: bool | None = None
    detail: str = ""  # what differs, or where the fresh run falls in the committed distribution
    setup: str = ""  # the fresh run's set-up, in words (records.setup_words)


def setup_differences(fresh: dict, committed: dict) -> list[str]:
    """The parts of the set-up in which two records differ; empty when bit-identity is promised."""
    a, b = fresh["provenance"], committed["provenance"]
    differ = [k for k in SAME_SETUP_KEYS if a.get(k) != b.get(k)]
    differ += machine.float_path_gap(a, b)
    made = record_generation(fresh), record_generation(committed)
    if None in made or made[0] != made[1]:  # unknown generations promise nothing
        differ.insert(0, "engine generation")
    return differ


def identical(fresh: dict, committed: dict, fresh_weights: Path, committed_weights: Path) -> bool:
    """The same history, epoch by epoch (wall times aside), the same divergence and the same final weights."""
    if records.without_timings(fresh["history"]) != records.without_timings(committed["history"]):
        return False
    if fresh["diverged_at"] != committed["diverged_at"]:
        return False
    if not (fresh_weights.exists() and committed_weights.exists()):
        return False
    ours, theirs = records.load_weights(fresh_weights), records.load_weights(committed_weights)
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def _figures(record: dict, last_epochs: int) -> tuple[float | None, float | None, bool]:
    step = STEPS.get(record["step"])
    goals = step.goals if step else None
    history = record["history"]
    final = history[-1]["test_acc"] if history and record["diverged_at"] is None else None
    lowest = lowest_of_last(history, last_epochs) if history and record["diverged_at"] is None else None
    met = bool(goals) and meets(record, goals)
    return final, lowest, met


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "—"
    # "±" in the report is a 95 % interval; a spread is written as the sd it is
    return f"{statistics.fmean(values):.2f} (sd {statistics.stdev(values):.2f}, n={len(values)})"


def compare(fresh_dir: Path, committed_dir: Path = records.DEFAULT_RUNS,
            only: set[tuple[str, int]] | None = None) -> list[Pair]:
    """Every fresh record under `fresh_dir` (or only the (step, seed)s in `only`) paired with the committed one."""
    fresh_all, committed_all = records.load_all(fresh_dir), records.load_all(committed_dir)
    pairs = []
    for name, fresh_records in fresh_all.items():
        committed_by_seed = {r["seed"]: r for r in committed_all.get(name, [])}
        step = STEPS.get(name)
        last = step.goals.last_epochs if step else 5
        # The committed seeds the step was judged on: the distribution a run on another set-up is set against.
        judged = [_figures(r, last) for r in committed_by_seed.values() if step and r["seed"] in step.seeds]
        finals, lows = [f[0] for f in judged if f[0] is not None], [f[1] for f in judged if f[1] is not None]
        for fresh in fresh_records:
            if only is not None and (name, fresh["seed"]) not in only:
                continue
            final, lowest, met = _figures(fresh, last)
            where = setup_words(fresh["provenance"])
            committed = committed_by_seed.get(fresh["seed"])
            if committed is None or step is None or changed_run_fields(step, committed["config"]) \
                    or changed_run_fields(step, fresh["config"]) or committed["evaluated_on"] != fresh["evaluated_on"]:
                pairs.append(Pair(name, fresh["seed"], UNPAIRED, final, lowest, met, setup=where))
                continue
            c_final, c_lowest, c_met = _figures(committed, last)
            epochs = [len(r["history"]) if r["diverged_at"] is None else None for r in (fresh, committed)]
            if None not in epochs and epochs[0] != epochs[1]:  # e.g. run --epochs 1: not the same run at all
                pairs.append(Pair(name, fresh["seed"], UNPAIRED, final, lowest, met,
                                  detail=f"{epochs[0]} epochs, the committed run {epochs[1]}", setup=where))
                continue
            differ = setup_differences(fresh, committed)
            if differ:
                relation, detail = OTHER_SETUP, (f"another {', '.join(differ)}; committed seeds: final {spread(finals)}, "
                                                 f"lowest of last {last} {spread(lows)}")
            elif identical(fresh, committed, *(records.record_paths(d, name, fresh["seed"])[1]
                                               for d in (fresh_dir, committed_dir))):
                relation, detail = IDENTICAL, ""
            else:
                relation, detail = DIFFERENT, "the same set-up promises the same bits: a defect"
            pairs.append(Pair(name, fresh["seed"], relation, final, lowest, met, c_final, c_lowest, c_met, detail, where))
    return sorted(pairs, key=lambda p: (list(STEPS).index(p.step) if p.step in STEPS else len(STEPS), p.step, p.seed))


def rows(pairs: list[Pair]) -> tuple[list[list[str]], list[str]]:
    """The reproduction table as text cells and its header (the CLI prints it; the report renders it)."""
    pct = lambda x: "—" if x is None else f"{x:.2f}"
    met = lambda m: "—" if m is None else ("met" if m else "missed")
    header = ["step", "seed", "final: committed", "fresh", "lowest of last 5: committed", "fresh", "goals: committed",
              "fresh", "relation"]
    return [[p.step, str(p.seed), pct(p.committed_final), pct(p.fresh_final), pct(p.committed_lowest),
             pct(p.fresh_lowest), met(p.committed_met), met(p.fresh_met),
             p.relation + (f" ({p.detail})" if p.detail else "")] for p in pairs], header


def tally(pairs: list[Pair]) -> str:
    counts = {r: sum(p.relation == r for p in pairs) for r in (IDENTICAL, DIFFERENT, OTHER_SETUP, UNPAIRED)}
    return ", ".join(f"{n} {r}" for r, n in counts.items() if n) or "no fresh records"


def elsewhere(pairs: list[Pair], committed_dir: Path = records.DEFAULT_RUNS) -> list[str]:
    """Per step and set-up of the fresh runs made elsewhere than the committed ones (OTHER_SETUP): whether the
    claim holds there, the floor held in each of the last N epochs on k of n seeds, the misses named, beside
    the committed seeds' figures. One line each."""
    committed_all, out = records.load_all(committed_dir), []
    groups: dict[tuple[str, str], list[Pair]] = {}
    for p in pairs:
        if p.relation == OTHER_SETUP:
            groups.setdefault((p.step, p.setup), []).append(p)
    for (name, where), group in groups.items():
        goals = STEPS[name].goals
        held = [p for p in group if p.fresh_lowest is not None and at_least(p.fresh_lowest, goals.accuracy_floor)]
        missed = named_misses([p.seed for p in group if p not in held], {p.seed: p.fresh_lowest for p in group})
        judged = [_figures(r, goals.last_epochs)[1] for r in committed_all.get(name, []) if r["seed"] in STEPS[name].seeds]
        out.append(f"{name} on {where}: the floor ({goals.accuracy_floor:g} % in each of the last {goals.last_epochs} "
                   f"epochs) held on {len(held)} of {len(group)} seeds" + (f", missed on {missed}" if missed else "")
                   + f"; lowest of the last {goals.last_epochs} {spread([p.fresh_lowest for p in group if p.fresh_lowest is not None])}"
                   f", the committed seeds' {spread([x for x in judged if x is not None])}")
    return out


def reproduction(out: Path, ran: set[tuple[str, int]]) -> tuple[str, str] | None:
    """The reproduction table of the runs asked for, found under `out`, against the committed study: (its
    title, the table and its tally); None when there is nothing fresh to compare (the slow tier prints it too)."""
    if records.is_study_folder(out, records.DEFAULT_RUNS):
        return None  # these are the committed records themselves
    pairs = compare(out, only=ran)
    if not pairs:
        return None
    cells, header = rows(pairs)
    return (f"reproduction: {out} against the committed study ({records.DEFAULT_RUNS})",
            "\n".join([text_table(cells, header), tally(pairs), *elsewhere(pairs)]))

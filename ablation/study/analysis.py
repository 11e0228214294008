"""Numbers about steps and runs: goal verdicts and statistics over seeds (the network's anatomy is in
engine/models.py)."""
from __future__ import annotations

import itertools
import math
import statistics

from .step import Goals, Step

# Accuracies are counts over at least 1,000 images (steps of 0.01-0.1 %), stored as float32 percentages:
# 99.24 % is 99.239998. A bar is met when a value is within float noise of it, far below that resolution,
# so that a gain or a mean exactly at a bar (30 images over 6 folds is +0.05 %) is not failed by rounding.
SLACK = 1e-4  # percent


def at_least(value: float, bar: float) -> bool:
    return value >= bar - SLACK


def lowest_of_last(history: list[dict], last: int) -> float:
    """The lowest test accuracy over a run's last `last` epochs, as they came: where the floor is judged."""
    return min(row["test_acc"] for row in history[-last:])


def last_epochs_at_or_above(history: list[dict], floor: float, last: int) -> bool:
    """True when each of the last `last` epochs, as they came, has test accuracy >= floor."""
    tail = [row["test_acc"] for row in history[-last:]]
    return len(tail) == last and all(at_least(acc, floor) for acc in tail)


def holds_floor(record: dict, goals: Goals) -> bool:
    """Whether a run holds the accuracy floor in each of its last N epochs (a diverged run does not)."""
    return record["diverged_at"] is None and last_epochs_at_or_above(record["history"], goals.accuracy_floor,
                                                                     goals.last_epochs)


def goal_verdicts(goals: Goals, params: int, history: list[dict], diverged_at: int | None = None) -> dict:
    """Per-run verdicts of a step's goals; the evidence beside each."""
    return {
        "params": {"met": params <= goals.max_params, "value": params, "limit": goals.max_params},
        "epochs": {"met": len(history) <= goals.max_epochs and diverged_at is None,
                   "value": len(history), "limit": goals.max_epochs},
        "floor": {"met": diverged_at is None and last_epochs_at_or_above(history, goals.accuracy_floor, goals.last_epochs),
                  "min_last": lowest_of_last(history, goals.last_epochs) if history else None, "floor": goals.accuracy_floor, "last": goals.last_epochs},
        "diverged": {"met": diverged_at is None, "epoch": diverged_at},
    }


def run_meets_goals(record: dict) -> bool:
    return all(v["met"] for v in record["verdicts"].values())


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# Two-sided 95 % Student-t quantiles by degrees of freedom (1..30); beyond that the normal 1.96 is close.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t95(df: float) -> float:
    """Two-sided 95 % Student-t quantile for `df` degrees of freedom; a fractional df (Welch's) is rounded down,
    the wider interval."""
    k = max(1, math.floor(df))
    return _T95[k - 1] if k <= len(_T95) else 1.96


def confidence_interval95(values: list[float]) -> tuple[float, float]:
    """95 % confidence interval of the mean (Student t); (nan, nan) for fewer than two values."""
    if len(values) < 2:
        return math.nan, math.nan
    mean, std = mean_std(values)
    half = t95(len(values) - 1) * std / math.sqrt(len(values))
    return mean - half, mean + half


def final_accuracies(records: list[dict]) -> dict[int, float]:
    """{seed: last-epoch test accuracy} of the runs that finished; a diverged run has no final accuracy."""
    return {r["seed"]: r["history"][-1]["test_acc"] for r in records if r["history"] and r["diverged_at"] is None}


def step_summary(records: list[dict], goals: Goals) -> dict:
    """Statistics of one step over its seed records (diverged runs count as misses)."""
    finals = list(final_accuracies(records).values())
    min_last = [lowest_of_last(r["history"], goals.last_epochs) for r in records if r["history"]]
    first_hit = [next((row["epoch"] for row in r["history"] if at_least(row["test_acc"], goals.accuracy_floor)), None)
                 for r in records]
    hits = sorted(e for e in first_hit if e is not None)
    mean, std = mean_std(finals)
    seeds_meeting = sum(run_meets_goals(r) for r in records)
    mean_ok = goals.mean_final_floor is None or (finals and at_least(mean, goals.mean_final_floor))
    return {
        "n": len(records),
        "final_mean": mean,
        "final_std": std,
        "final_ci95": confidence_interval95(finals),
        "min_of_min_last": min(min_last) if min_last else math.nan,
        "median_first_hit": statistics.median(hits) if hits else None,
        "seeds_meeting": seeds_meeting,
        "every_seed": bool(records) and seeds_meeting == len(records) and bool(mean_ok),
        "diverged": [r["seed"] for r in records if r["diverged_at"] is not None],
        "wall_seconds": statistics.fmean(r["provenance"]["wall_seconds"] for r in records) if records else math.nan,
    }


DRAW = 5  # seeds: the fewest a step's goals are judged on (issue 6's "every one of >= 5 seeds")


def draws_meeting_goals(records: list[dict], goals: Goals, k: int = DRAW) -> tuple[int, int] | None:
    """(how many, of all the ways to pick `k` of the step's seeds) would meet every goal: each run's, and the
    mean final accuracy where the goals set one. It says how much a verdict on k seeds owes to which seeds
    were drawn. None for k seeds or fewer, where the one draw is the verdict itself."""
    if len(records) <= k:
        return None
    finals = final_accuracies(records)
    meets = {r["seed"]: run_meets_goals(r) for r in records}
    hits = total = 0
    for draw in itertools.combinations(sorted(meets), k):
        total += 1
        if all(meets[s] for s in draw) and (goals.mean_final_floor is None
                                            or at_least(statistics.fmean(finals[s] for s in draw), goals.mean_final_floor)):
            hits += 1
    return hits, total


def lowest_accuracies(records: list[dict], last: int) -> dict[int, float]:
    """{seed: lowest test accuracy of the last `last` epochs} of the runs that finished."""
    return {r["seed"]: lowest_of_last(r["history"], last) for r in records if r["history"] and r["diverged_at"] is None}


def paired_delta(records: list[dict], parent_records: list[dict], measure=final_accuracies) -> dict | None:
    """A step's final test accuracy (or another per-seed `measure`, e.g. lowest_accuracies with its window)
    minus its parent's, seed by seed, over the seeds both ran to the end.

    What an ablation row claims is this difference; comparing the same seeds keeps a lucky or unlucky
    seed of one step from standing in for the change. None when no seed is shared.
    """
    child, parent = measure(records), measure(parent_records)
    seeds = sorted(child.keys() & parent.keys())
    if not seeds:
        return None
    deltas = [child[s] - parent[s] for s in seeds]
    mean, std = mean_std(deltas)
    return {"seeds": seeds, "deltas": deltas, "mean": mean, "std": std, "ci95": confidence_interval95(deltas)}


def meets(record: dict, goals: Goals) -> bool:
    """One run against `goals` as they are now (run_meets_goals reads the verdicts stored when it ran)."""
    return all(v["met"] for v in goal_verdicts(goals, record["params"], record["history"], record["diverged_at"]).values())


def meets_mission(record: dict) -> bool:
    """One run against the mission's own goals (not its step's, which may be stricter)."""
    return meets(record, Goals())


# --- the goals the slow tier asserts ---------------------------------------------------------------

class GoalMiss(AssertionError):
    """A run or a step that misses one of its goals. The slow tier's expected misses (strict xfails) name
    this type, so a crash, a missing record or a failure of another kind is never taken for one."""


def check_run_goals(step: Step, record: dict) -> None:
    """One run's goals (tests/test_goals.py's test_run): GoalMiss for a missed accuracy floor, the one miss a
    seed of `step.floor_misses` may show; AssertionError for what no expected miss covers (a divergence, a
    run of another length, a network of another size than the step's)."""
    goals, seed = step.goals, record["seed"]
    v = goal_verdicts(goals, record["params"], record["history"], record["diverged_at"])
    if not v["diverged"]["met"]:
        raise AssertionError(f"{step.name} seed {seed}: loss not finite at epoch {record['diverged_at']}")
    if not len(record["history"]) == step.epochs <= goals.max_epochs:
        raise AssertionError(f"{step.name} seed {seed}: {len(record['history'])} epochs, the step trains "
                             f"{step.epochs} of at most {goals.max_epochs}")
    # Over-budget steps are the seed's own design; their every-seed check carries that miss.
    if not (v["params"]["met"] or record["params"] == step.params > goals.max_params):
        raise AssertionError(f"{step.name} seed {seed}: {record['params']:,} parameters")
    if not v["floor"]["met"]:
        raise GoalMiss(f"{step.name} seed {seed}: min test accuracy over the last {goals.last_epochs} epochs "
                       f"{v['floor']['min_last']:.2f}% < {goals.accuracy_floor}%")


def check_goals(step: Step, records: list[dict]) -> None:
    """A step's goals on every seed of `records` (tests/test_goals.py's test_every_seed).

    First, the seeds that miss the accuracy floor must be exactly those of `step.floor_misses` among them
    (AssertionError with each seed's figure otherwise): an expected miss stands for the misses measured,
    not for more or for others. Then GoalMiss for each goal not met: the parameter budget, the goals on
    every seed, the mean final accuracy.
    """
    goals = step.goals
    lows = {r["seed"]: lowest_of_last(r["history"], goals.last_epochs) if r["history"] else math.nan for r in records}
    per_seed = ", ".join(f"seed {seed}: min last-{goals.last_epochs} {low:.2f}%" for seed, low in lows.items())
    missing = sorted(r["seed"] for r in records
                     if not goal_verdicts(goals, r["params"], r["history"], r["diverged_at"])["floor"]["met"])
    recorded = sorted(set(step.floor_misses) & set(lows))
    if missing != recorded:
        raise AssertionError(f"{step.name}: seeds {missing} miss ≥ {goals.accuracy_floor}% in the last "
                             f"{goals.last_epochs} epochs, the step records {recorded} (floor_misses) ({per_seed})")
    summary = step_summary(records, goals)
    if records[0]["params"] > goals.max_params:
        raise GoalMiss(f"{records[0]['params']:,} parameters > {goals.max_params:,}")
    if summary["seeds_meeting"] != len(records):
        raise GoalMiss(f"goals met on {summary['seeds_meeting']}/{len(records)} seeds ({per_seed})")
    if goals.mean_final_floor is not None and not at_least(summary["final_mean"], goals.mean_final_floor):
        raise GoalMiss(f"mean final accuracy {summary['final_mean']:.2f}% < {goals.mean_final_floor}%")


# --- text for the command line ---------------------------------------------------------------

def text_table(rows: list[list], header: list[str]) -> str:
    """`rows` under `header` as left-aligned columns of plain text, a rule under the header (the CLI's tables too)."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_table(steps: list, found: dict[str, list[dict]], *, held_out: bool = False) -> str:
    """Every record of `steps` among `found` ({step name: records}, earlier runs included): one row a step."""
    rows = []
    for step in steps:
        if recs := found.get(step.name, []):
            s = step_summary(recs, step.goals)
            own = "the mission's" if step.goals == Goals() else "met" if s["every_seed"] else "not met"
            lowest = f"{s['min_of_min_last']:.2f}" if math.isfinite(s["min_of_min_last"]) else "diverged"
            rows.append([step.name, s["n"], f"{recs[0]['params']:,}", final_cell(s), lowest,
                         f"{sum(map(meets_mission, recs))} of {s['n']}", own])
    return text_table(rows, ["step", "seeds", "params", f"final {'held-out' if held_out else 'test'} acc %",
                             "lowest of last 5 %", "meet the mission", "its own goals, all seeds"])


def final_cell(summary: dict) -> str:
    """The summary's final accuracy: mean ± std of the runs that finished, and which seeds diverged."""
    diverged = f"seed{'s' * (len(summary['diverged']) > 1)} {', '.join(map(str, summary['diverged']))} diverged"
    if not math.isfinite(summary["final_mean"]):
        return "diverged" if len(summary["diverged"]) == summary["n"] else diverged
    text = f"{summary['final_mean']:.2f} ± {summary['final_std']:.2f}"
    return f"{text} ({diverged})" if summary["diverged"] else text

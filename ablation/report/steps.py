"""Each step's view: the numbers of its section and its row in the summary table, its goals judged on its
seeds, its Result written from the records, and the chance that a new seed misses the floor.

step_view holds its numbers as numbers: the templates format them with format.py's filters (`s.params | count`)
and give a sortable cell the same number, unformatted, as its data-sort. What is written here is text made of
several numbers: the sentences (the goals' verdict, the Result, the difference from the parent) and the
cells "final" (mean and sd) and "ci_text". "±" on the page is always a 95 % interval's half-width; an sd is
written "sd"."""
from __future__ import annotations

import math
import statistics

from functools import partial

from ..study.analysis import (DRAW, at_least, draws_meeting_goals, final_accuracies, lowest_accuracies, lowest_of_last,
                              paired_delta, step_summary)
from ..study.registry import STEPS
from ..study.step import Goals, Step, config_diff
from ..study.survival import THIN, holding, step_prediction
from .format import count, describe_change, describe_value, missing, num, signed, signed_interval
from .mission import MISSION_GOALS, mission_view


def layer_rows(rows: list[dict] | None, views: int = 1) -> dict | None:
    """A step's per-layer table, as measure.py measured it (None: not measured for this folder); a step that
    averages `views` views of each test image pays its network's multiply-adds that many times."""
    if not rows:
        return None
    macs = sum(r["macs"] for r in rows)
    return {"rows": [{"layer": r["layer"], "output": "×".join(map(str, r["output"])), "params": count(r["params"]),
                      "macs": count(r["macs"]), "rf": r["rf"], "jump": r["jump"]} for r in rows],
            "params": count(sum(r["params"] for r in rows)), "macs": count(macs),
            "views": views, "macs_per_image": count(macs * views)}


def family(step: Step) -> str:
    """The line of the study a step belongs to, by what it asks of itself: the table filters on it."""
    if step.seed_report is not None:
        return "seed study"
    limit = step.goals.max_params
    return "< 10k" if limit >= MISSION_GOALS.max_params else f"≤ {limit // 1000}k"


def tree(steps: dict[str, Step]) -> list[tuple[str, int]]:
    """The steps depth first, in registry order among siblings, each with its indent: a child of a parent with
    other children steps in one level; an only child keeps its parent's, so a chain reads as one column and
    each branch as a step in."""
    children: dict[str | None, list[str]] = {}
    for name, step in steps.items():
        children.setdefault(step.parent if step.parent in steps else None, []).append(name)
    out: list[tuple[str, int]] = []

    def walk(name: str, level: int) -> None:
        out.append((name, level))
        kids = children.get(name, [])
        for kid in kids:
            walk(kid, level + (len(kids) > 1))

    for root in children.get(None, []):
        walk(root, 0)
    return out


def paired_view(paired: dict | None) -> dict | None:
    """A paired difference as the table's cell writes it: the mean, its 95 % interval and the seeds."""
    if not paired:
        return None
    return {"mean": paired["mean"], "interval": signed_interval(paired["ci95"]) or "one seed", "n": len(paired["seeds"])}


def step_verdict(step: Step, records: list[dict], summary: dict | None) -> dict:
    """The goals cell: met on every seed or not, which goals failed on how many seeds, the known reason."""
    if not records:
        return {"status": "none", "text": "no runs", "failed": [], "known_miss": step.known_miss, "short": "no runs"}
    n = len(records)
    g = step.goals
    names = {"params": f"over {g.max_params:,} params", "epochs": f"not completed within {g.max_epochs} epochs",
             "floor": f"below {g.accuracy_floor:g} % in the last {g.last_epochs}", "diverged": "diverged"}
    failed = []
    for key, label in names.items():
        misses = sum(not r["verdicts"][key]["met"] for r in records)
        if misses:
            failed.append(f"{label}: {misses}/{n} seeds")
    short = len(step.seeds) - n
    ok = summary["every_seed"] and short <= 0
    # "k of n seeds meet ...", never "k/n": after "not met" a bare count reads as the seeds that failed
    text = f"{summary['seeds_meeting']} of {n} seeds meet its per-seed goals" + (
        f" ({len(step.seeds)} planned)" if short > 0 else "")
    if g.mean_final_floor and not at_least(summary["final_mean"], g.mean_final_floor):
        # 99.498 would print as 99.50 beside a 99.5 bar: a third decimal where two would hide the miss
        mean = summary["final_mean"]
        text += f"; mean final {num(mean, 2 if round(mean, 2) < g.mean_final_floor else 3)} % < {g.mean_final_floor:g} %"
    why = [f"{summary['seeds_meeting']} of {n} seeds"] if summary["seeds_meeting"] < n else []
    if g.mean_final_floor and not at_least(summary["final_mean"], g.mean_final_floor):
        why.append(f"mean final {num(summary['final_mean'], 3)} %")
    short = "met" if ok else "not met: " + ("; ".join(why) or f"{n} of {len(step.seeds)} seeds run")
    return {"status": "met" if ok else "miss", "text": ("met: " if ok else "not met: ") + text, "failed": failed,
            "known_miss": step.known_miss, "short": short}


def stricter_goals(goals: Goals) -> str | None:
    """What a step asks beyond the mission ("≤ 8,000 params, mean final ≥ 99.5 %"); None when nothing."""
    m, parts = MISSION_GOALS, []
    if goals.max_params != m.max_params:
        parts.append(f"≤ {goals.max_params:,} params")
    if (goals.accuracy_floor, goals.last_epochs) != (m.accuracy_floor, m.last_epochs):
        parts.append(f"≥ {goals.accuracy_floor:g} % in each of the last {goals.last_epochs}")
    if goals.max_epochs != m.max_epochs:
        parts.append(f"≤ {goals.max_epochs} epochs")
    if goals.mean_final_floor:
        parts.append(f"mean final ≥ {goals.mean_final_floor:g} %")
    return ", ".join(parts) or None


def vs_parent_text(parent: str | None, paired: dict | None) -> str | None:
    """One sentence: the step's final accuracy minus its parent's on the seeds both ran, with its 95 % CI."""
    if not paired:
        return None
    n = len(paired["seeds"])
    ci = f" (95 % CI {interval})" if (interval := signed_interval(paired["ci95"])) else ""
    per_seed = ", ".join(f"{signed(d)} (seed {s})" for s, d in zip(paired["seeds"], paired["deltas"]))
    return (f"Final test accuracy minus {parent}'s on the same {n} seed{'s' if n != 1 else ''}: "
            f"{signed(paired['mean'])} % on average{ci}; per seed {per_seed}.")


def draws_text(records: list[dict], goals: Goals) -> str | None:
    """One sentence: how many of the ways to draw DRAW of the step's seeds would meet every goal."""
    found = draws_meeting_goals(records, goals)
    if found is None:
        return None
    hits, total = found
    return (f"Of the {total:,} ways to draw {DRAW} of these {len(records)} seeds, {hits:,} ({100 * hits / total:.0f} %) "
            f"would meet every goal.")


def measured_result(step: Step, records: list[dict]) -> str:
    """Our steps' Result, written from the records (the registry keeps only what they cannot say): the
    parameters, each seed's final and lowest-of-last accuracy, how many hold the floor, the last epoch's
    training accuracy and the time a run took."""
    if not records:
        return "Nothing measured: no records of this step in this folder."
    last, floor = step.goals.last_epochs, step.goals.accuracy_floor
    ran = sorted((r for r in records if r["history"]), key=lambda r: r["seed"])
    finals = final_accuracies(ran)
    held, missed = holding(step.goals, ran)
    spread = f" (sd {num(statistics.stdev(finals.values()))})" if len(finals) > 1 else ""
    text = f"{count(records[0]['params'])} parameters. " + (
        f"Final-epoch test accuracy {num(statistics.fmean(finals.values()), 3)} %{spread} over {len(finals)} "
        f"seed{'s' if len(finals) != 1 else ''} ({', '.join(num(v) for v in finals.values())}); " if finals else "No run finished; ")
    text += (f"the lowest of the last {last} epochs per seed {', '.join(num(lowest_of_last(r['history'], last)) for r in ran)}"
             f" %: the {floor:g} % floor holds on {len(held)} of {len(ran)} seed{'s' if len(ran) != 1 else ''}." if ran else
             "no run got through an epoch.")
    if missed:
        dips = {r["seed"]: min(r["history"][-last:], key=lambda row: (row["test_acc"], row["epoch"]))
                for r in ran if r["seed"] in missed}
        text += " Lowest epoch of each seed that misses: " + "; ".join(
            f"seed {seed}, {num(row['test_acc'])} % in epoch {row['epoch']}" for seed, row in dips.items()) + "."
    if diverged := [r["seed"] for r in records if r["diverged_at"] is not None]:
        text += f" Diverged: seed{'s' if len(diverged) > 1 else ''} {', '.join(map(str, diverged))}."
    if train := [r["history"][-1]["train_acc"] for r in ran if r["diverged_at"] is None]:
        text += f" Training accuracy in the last epoch, on the images as trained, {num(statistics.fmean(train))} %."
    minutes = [r["provenance"]["wall_seconds"] / 60 for r in records if "wall_seconds" in r.get("provenance", {})]
    if minutes:
        text += (f" {num(statistics.fmean(minutes), 1)} minutes a run on average "
                 f"({num(min(minutes), 1)}–{num(max(minutes), 1)}, on {', '.join(sorted(machines(records)))}).")
    return text


def machines(records: list[dict]) -> set[str]:
    """The CPUs or GPUs the records were trained on, as their provenance names them."""
    return {r["provenance"].get("device_name") or r["provenance"].get("device", "an unnamed device") for r in records}


def step_view(step: Step, records: list[dict], parent_records: list[dict] | None = None) -> dict:
    summary = step_summary(records, step.goals) if records else None
    finals = list(final_accuracies(records).values())
    bests = [max(r["history"], key=lambda row: (row["test_acc"], -row["epoch"])) for r in records if r["history"]]
    ours_best = statistics.fmean(b["test_acc"] for b in bests) if bests else None
    ours_epoch = statistics.median(b["epoch"] for b in bests) if bests else None
    sr = step.seed_report
    parent = STEPS.get(step.parent) if step.parent else None
    paired_final = paired_delta(records, parent_records or [])  # the sentence and the table's Δ final cell
    view = {
        "name": step.name, "anchor": "step-" + step.name, "parent": step.parent, "step": step,
        "target": step.target, "result": step.result, "analysis": step.analysis,
        "measured_result": None if step.seed_report else measured_result(step, records), "notes": step.notes,
        "known_miss": step.known_miss, "goals": step.goals.describe(),
        "params": records[0]["params"] if records else step.params,
        "epochs": step.epochs, "batch": step.batch_size, "lr": step.describe_lr(), "augment": step.describe_augment(),
        "n": len(records), "planned": len(step.seeds), "finals": finals,
        "final_mean": summary["final_mean"] if summary else None,
        "final": (f"{num(summary['final_mean'])} % (sd {num(summary['final_std'])})" if finals else "—"),
        "n_final": len(finals),
        "ci": summary["final_ci95"] if summary else (math.nan, math.nan),
        "ci_text": (f"[{num(summary['final_ci95'][0])}, {num(summary['final_ci95'][1])}]"
                    if summary and not missing(summary["final_ci95"][0]) else "—"),
        "min_last": summary["min_of_min_last"] if summary else None,
        "first_hit": summary["median_first_hit"] if summary else None,
        "seed_best": sr.best_test_acc if sr else None,
        "seed_epoch": sr.epoch if sr else None,
        "seed_epochs_run": sr.epochs_run if sr else None,
        "ours_best": ours_best, "ours_epoch": ours_epoch,
        "delta": ours_best - sr.best_test_acc if sr and ours_best is not None else None,
        "diverged": [(r["seed"], r["diverged_at"]) for r in records if r["diverged_at"] is not None],
        "diff": [{"field": k, "parent": describe_value(a), "child": describe_value(b)}
                 for k, (a, b) in config_diff(parent, step).items()] if parent else [],
        "change": [describe_change(k, a, b) for k, (a, b) in config_diff(parent, step).items()] if parent else [],
        "family": family(step),
        "wall": summary["wall_seconds"] if summary else None,
        "vs_parent": vs_parent_text(step.parent, paired_final),
        # what the step bought over its parent, on the seeds both ran: the ablation table's Δ columns
        "delta_final": paired_view(paired_final),
        "delta_lowest": paired_view(paired_delta(records, parent_records or [],
                                                 partial(lowest_accuracies, last=MISSION_GOALS.last_epochs))),
        "draws": draws_text(records, step.goals),
        "quoted": sr is not None,
        "lowests": [(r["seed"], lowest_of_last(r["history"], MISSION_GOALS.last_epochs)) for r in records if r["history"]],
        "ci_half": (summary["final_ci95"][1] - summary["final_ci95"][0]) / 2 if summary else None,
        "mission": mission_view(step, records),
        "stricter": stricter_goals(step.goals),
        "prediction": prediction_view(step, records),
    }
    view["mean_lowest"] = statistics.fmean(v for _, v in view["lowests"]) if view["lowests"] else None
    view["verdict"] = step_verdict(step, records, summary)
    return view


def prediction_view(step: Step, records: list[dict]) -> dict | None:
    """survival.step_prediction, formatted: the chance that a new seed misses the floor."""
    p = step_prediction(step, records) if records else None
    if p is None or not p["n"]:
        return None
    low, high = p["rate_ci95"]
    # The cut is said wherever the rate is near it: 4.8 % reads as safe unless the reader knows 5 % is "thin".
    cut = f"the {100 * THIN:g} % cut for “thin”"
    near = "" if missing(p["rate"]) else (f"at or above {cut}" if p["thin"] else
                                          f"just under {cut}" if p["rate"] >= THIN / 2 else "")
    return {**p, "rate_text": "—" if missing(p["rate"]) else f"{100 * p['rate']:.1f} %", "near_cut": near,
            "interval": f"{100 * low:.0f}–{100 * high:.0f} %",
            "fresh_text": "—" if missing(p["all_fresh_hold"]) else f"{p['all_fresh_hold']:.2f}"}

"""The runs that check the study from outside its judged seeds: the validation runs every choice was made on
(held-out training images), the folds and the screens across them, a second implementation of the same
recipe, and a reproduction of the study by fresh runs.

A row of the first three tables holds each cell as the page shows it, and under "sort" the number each
sortable column is ordered by (its data-sort, read by the page's sorting script). The two are kept apart
because a cell is often more than one number formatted ("3/4" ahead; a difference with its interval and
seed count; "—"), so its number is never read back from the text."""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..runs import reproduce
from ..runs.records import DEFAULT_RUNS, is_study_folder
from ..study.analysis import final_accuracies, lowest_of_last, paired_delta
from ..study.registry import STEPS
from ..study.screen import Rule, as_registered, pairs, verdict
from ..study.step import registered_name
from ..study.survival import compare_implementations
from .format import count, num, signed, signed_interval
from .mission import MISSION_GOALS


def vs_registered_text(paired: dict | None) -> str:
    """A variant's final held-out accuracy minus its step's as registered, on the seeds both ran (paired_delta's
    answer), with its interval and the number of seeds."""
    if not paired:
        return "no shared seed"
    ci = f" {interval}" if (interval := signed_interval(paired["ci95"])) else ""
    return f"{signed(paired['mean'])}{ci} ({len(paired['seeds'])})"


def fold_view(folds: dict[int, dict[str, list[dict]]], records_by_step: dict[str, list[dict]]) -> list[dict]:
    """k-fold validation against the test set: for each registry step with runs as registered in two or more
    folds (load_folds' answer), its final held-out accuracy per fold, their mean, and its final test
    accuracy. It shows whether the held-out split ranks steps as the test set does."""
    rows = []
    for name, step in STEPS.items():
        finals = {k: f for k, runs in sorted(folds.items()) if (f := final_accuracies(as_registered(step, runs)))}
        seeds = sorted(set.intersection(*(set(f) for f in finals.values()))) if finals else []
        if len(finals) < 2 or not seeds:
            continue
        # The seeds every fold ran, so that no fold's figure rests on other seeds than the rest.
        per_fold = {k: statistics.fmean(f[s] for s in seeds) for k, f in finals.items()}
        test = list(final_accuracies(records_by_step.get(name, [])).values())
        mean, test_mean = statistics.fmean(per_fold.values()), statistics.fmean(test) if test else None
        rows.append({"name": name, "params": count(step.params), "n_folds": len(per_fold),
                     "folds": ", ".join(map(str, per_fold)),
                     "seeds": ", ".join(map(str, seeds)),
                     "per_fold": ", ".join(num(v) for v in per_fold.values()),
                     "mean": num(mean), "test": num(test_mean), "n_test": len(test),
                     "sort": {"params": step.params, "mean": mean, "test": test_mean}})
    return rows


def screen_view(folds: dict[int, dict[str, list[dict]]], rule: Rule = Rule()) -> list[dict]:
    """One row per variant of a registry step screened on two or more folds (`python -m ablation screen`):
    its final held-out accuracy minus the step's as registered, (fold, seed) by (fold, seed), and the
    screening rule's verdict."""
    rows = []
    for name in sorted({n for runs in folds.values() for n in runs if "[" in n}):
        base = registered_name(name)
        if base not in STEPS or len(found := pairs(STEPS[base], name, folds)) < 2 or len({p.fold for p in found}) < 2:
            continue
        v = verdict(found, rule)
        label = (lambda p: f"{p.fold}") if len({p.seed for p in found}) == 1 else (lambda p: f"{p.fold}/s{p.seed}")
        params = next(r["params"] for runs in folds.values() for r in runs.get(name, []))
        rows.append({"name": name, "base": base, "overrides": name[len(base) + 1:-1], "params": count(params),
                     "n": v["n"], "folds": ", ".join(map(str, v["folds"])),
                     "deltas": ", ".join(f"{label(p)}: {'diverged' if math.isnan(p.variant) else signed(p.delta)}" for p in found),
                     "mean": signed(v["mean"]), "ci": signed_interval(v["ci95"]) or "",
                     "ahead": f"{v['ahead']}/{v['n']}", "passed": v["passed"], "verdict": v["text"],
                     "min_delta": signed(v["floor_change"]),
                     "sort": {"params": params, "mean": v["mean"], "ahead": v["ahead"] / v["n"] if v["n"] else None,
                              "min_delta": v["floor_change"]}})
    return rows


def validation_view(runs: dict[str, list[dict]]) -> list[dict]:
    """One row per variant among `runs` (reports/validation, loaded): the runs every choice of steps 6 onward
    was made on, so that a step's Analysis can be checked against them. Accuracy here is on the held-out
    training images, never the test set; variants are named as `run --set` named them."""
    rows = []
    last = MISSION_GOALS.last_epochs  # the same window as the summary table's "min, last N"
    for name, records in sorted(runs.items()):
        finals = final_accuracies(records)
        # A diverged run keeps its column, so the seeds, finals and minima stay aligned.
        cell = lambda r, value: f"diverged @ {r['diverged_at']}" if r["seed"] not in finals else num(value(r))
        base, _, overrides = name.partition("[")
        compared = base in STEPS and overrides  # a variant of a registry step, set beside the step as registered
        paired = paired_delta(records, as_registered(STEPS[base], runs)) if compared else None
        mins = [lowest_of_last(r["history"], last) for r in records if r["seed"] in finals]
        mean, lowest = statistics.fmean(finals.values()) if finals else None, min(mins) if mins else None
        rows.append({"name": name, "base": base, "in_registry": base in STEPS, "overrides": overrides[:-1] or "as registered",
                     "params": count(records[0]["params"]), "n": len(records),
                     "seeds": ", ".join(str(r["seed"]) for r in records),
                     "finals": ", ".join(cell(r, lambda r: finals[r["seed"]]) for r in records),
                     "mean": num(mean), "min": num(lowest),
                     "mins": ", ".join(cell(r, lambda r: lowest_of_last(r["history"], last)) for r in records),
                     "vs_base": vs_registered_text(paired) if compared else "—",
                     "evaluated_on": sorted({str(r.get("evaluated_on")) for r in records}),
                     "held_out": all(str(r.get("evaluated_on")).startswith("validation") for r in records),
                     "sort": {"params": records[0]["params"], "mean": mean, "vs_base": paired["mean"] if paired else None,
                              "min": lowest}})
    return rows


def implementations_view(records_by_step: dict[str, list[dict]], notebook: dict[str, list[dict]]) -> list[dict]:
    """Each step trained by the second implementation (notebook.py: torchvision transforms, a DataLoader,
    torch.optim), its distribution beside the engine's judged seeds, and the difference with its interval."""
    out = []
    for name, theirs in notebook.items():
        step = STEPS.get(name)
        ours = [r for r in records_by_step.get(name, []) if step and r["seed"] in step.seeds]
        if step and ours and theirs:
            c = compare_implementations(ours, theirs, step.goals)
            rows = [{"name": k, **c[k]} for k in ("engine", "notebook")]
            out.append({"step": name, "rows": rows, "difference": c["difference"], "last": c["last"],
                        "floor": c["floor"]})
    return out


def reproduction_view(runs: Path) -> dict | None:
    """The reproduction table of a folder of fresh runs against the committed study; None for the study itself."""
    if is_study_folder(runs, DEFAULT_RUNS):
        return None
    pairs = reproduce.compare(runs)
    cells, header = reproduce.rows(pairs)
    return {"rows": [{"cells": c, "relation": p.relation} for c, p in zip(cells, pairs)], "header": header,
            "tally": reproduce.tally(pairs), "committed": str(DEFAULT_RUNS), "fresh": str(runs),
            "defect": reproduce.DIFFERENT}

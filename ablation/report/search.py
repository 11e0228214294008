"""The report's "Search" section: each recipe search under reports/search/<STEP>/ (python -m ablation search), read
from its Optuna journal: the space, what became of the trials, the objective trial by trial and the best five, and
what became of each of those: the verdict of its screen (`python -m ablation screen`, on held-out folds), or the
command that would screen it.

Deterministic: trials in number order, figures at fixed precision, no clock time shown but the trials' summed
training time. Optuna is needed to read a journal; without it the section says so and shows nothing else.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from ..runs import journal
from ..study.registry import STEPS, with_overrides
from ..study.screen import pairs, verdict
from ..study.spaces import LAST_EPOCHS, SPACES, assignments
from ..study.step import config_diff
from .charts import TEST_COLOR, Series, line_chart, nice_range
from .format import signed

KIND_WORDS = {"log": "log-uniform", "float": "uniform", "int": "whole numbers", "choice": "one of"}


def describe(dimension) -> str:
    if dimension.kind == "choice":
        return f"{dimension.field}: one of {', '.join(f'{c:g}' if isinstance(c, float) else str(c) for c in dimension.choices)}"
    return f"{dimension.field}: {KIND_WORDS[dimension.kind]} {dimension.low:g}–{dimension.high:g}"


def trials_chart(step: str, found: list[dict]) -> str:
    """Each trained trial's objective by trial number (dots), and the best so far (a line)."""
    done = [(r["number"], r["value"]) for r in found if r["outcome"] == "complete"]
    if not done:
        return ""
    best, running = [], float("-inf")
    for number, value in done:
        running = max(running, value)
        best.append((number, running))
    lo, hi = nice_range([v for _, v in done])
    last = max(n for n, _ in done)
    return line_chart(f"{step}: the objective of each complete trial, and the best so far",
                      [Series("trial", tuple(done), "#0072b2", width=0, dots=True),
                       Series("best so far", tuple(best), TEST_COLOR, width=2)],
                      x_range=(0, max(last, 1)), y_range=(lo, hi), x_label="trial",
                      x_ticks=[n for n in range(0, last + 1, max(1, last // 8))],
                      y_label=f"lowest of the last {LAST_EPOCHS}, %", hover="{:.2f}", unit=" %")


def shell_word(text: str) -> str:
    """`text` as one word of a shell command: in double quotes where it needs quoting and holds nothing a shell
    reads inside them (a layout's single quotes and spaces), else as shlex quotes it."""
    if shlex.quote(text) == text or set(text) & set('"$`\\!'):
        return shlex.quote(text)
    return f'"{text}"'


def screen_of(step_name: str, values: dict, folds: dict[int, dict[str, list[dict]]]) -> dict:
    """What became of a trial's recipe: {"screened": whether held-out folds hold runs of its config (however their
    --set were written: screen.pairs matches configs), "verdict": the screen's verdict in a few words, "passed",
    "command": the screen to run when there is none}."""
    step = STEPS.get(step_name)
    nothing = {"screened": False, "verdict": "", "passed": False, "command": ""}
    if step is None:  # a search of a step since renamed or removed: nothing to pair it with
        return nothing
    overrides, _ = assignments(step, values)
    variant = with_overrides(step, overrides)
    if not config_diff(step, variant):  # the step's own recipe (the baseline): nothing to screen
        return nothing
    if found := pairs(step, variant, folds):
        v = verdict(found)
        # the rule's first word (passes, fails, incomplete), then what it judged
        return {"screened": True, "passed": v["passed"], "command": "",
                "verdict": f"{v['text'].partition(':')[0]} ({v['n']} (fold, seed) pairs, mean {signed(v['mean'])} %"
                           + (f"; {v['across']})" if v["across"] else ")")}
    return {**nothing, "command": f"python -m ablation screen {step.name} " + " ".join(
                f"--set {shell_word(o)}" for o in overrides if config_diff(step, with_overrides(step, [o])))}


def search_view(folder: Path, study, folds: dict[int, dict[str, list[dict]]] | None = None) -> dict:
    found = journal.rows(study)
    settings = study.user_attrs.get("settings", {})
    space = SPACES.get(settings.get("space"))
    count = lambda outcome: sum(r["outcome"] == outcome for r in found)
    seconds = sum(r["seconds"] or 0.0 for r in found if r["outcome"] in journal.TRAINED)
    # the step's own recipe, trained and scored as the trials are (the last such trial: an earlier one was cut short)
    baseline = next((r for r in reversed(found) if r["as_registered"]), None)
    return {"name": folder.name, "step": settings.get("step", folder.name), "space": settings.get("space", "?"),
            "dimensions": [describe(d) for d in space.dimensions] if space else [],
            "max_params": settings.get("max_params"), "holdout": settings.get("holdout"), "fold": settings.get("fold"),
            "seeds": ", ".join(map(str, settings.get("seeds", []))), "quick": bool(settings.get("quick")),
            "trained": sum(r["outcome"] in journal.TRAINED for r in found), "complete": count("complete"),
            "pruned": count("pruned"), "over_budget": count("over budget"), "failed": count("failed"),
            # left running by a command stopped (or still at work), or queued: the same command trains them
            "unfinished": count("running") + count("waiting"),
            "hours": f"{seconds / 3600:.2f}",
            "baseline": None if baseline is None else {
                "number": baseline["number"], "outcome": baseline["outcome"],
                "value": f"{baseline['value']:.2f}" if baseline["outcome"] == "complete" else None},
            "best": [{"number": r["number"], "value": f"{r['value']:.2f}", "set": " ".join(r["set"]),
                      "as_registered": r["as_registered"],
                      "params": f"{r['params']:,}" if r["params"] is not None else "",
                      **screen_of(settings.get("step", folder.name), r["values"], folds or {})}
                     for r in journal.best(found)[:5]],
            "chart": trials_chart(settings.get("step", folder.name), found)}


def searches_view(searches: Path, folds: dict[int, dict[str, list[dict]]] | None = None) -> dict:
    """{"searches": one view per search folder with a journal, "note": why none is shown (None when shown)};
    `folds` the held-out folds' records (records.load_folds), where the screens of found recipes are."""
    folders = sorted(p.parent for p in Path(searches).glob(f"*/{journal.JOURNAL}"))
    if not folders:
        return {"searches": [], "note": None}
    try:
        journal.import_optuna()
    except journal.OptunaMissing:
        return {"searches": [], "note": f"{len(folders)} search(es) under {searches} cannot be shown without Optuna "
                                        f"({journal.INSTALL})"}
    return {"searches": [search_view(f, journal.load(f), folds) for f in folders], "note": None}

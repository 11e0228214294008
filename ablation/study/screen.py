"""k-fold screening: is a variant of a step better than the step, on held-out folds, fold by fold?

At these sizes one 10,000-image split decides a choice largely at random: a paired difference between
two steps moves by up to 0.25 % from fold to fold (the report's "Across folds" table), more than the
differences sought. A screen therefore trains the step as registered and its variant on the same
folds and seeds, pairs their final held-out accuracies (fold, seed) by (fold, seed), and judges the
pairs by a rule fixed before any run (`Rule`), so that what decides is not read off the results.

Fold 0 is `reports/validation`, fold K is `reports/validation-folds/fold-K` beside it: the folders that
`run --holdout N --fold K --out ...` writes and the report reads.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from .analysis import at_least, confidence_interval95, final_accuracies, lowest_of_last, text_table
from .step import Goals, Step, changed_run_fields, check, config_diff, in_range, is_whole
from .survival import record_generation

VALIDATION = Path("reports/validation")
LAST_EPOCHS = Goals().last_epochs  # the mission's window, for the lowest accuracy of a run's last epochs


def fold_dir(validation: Path, fold: int) -> Path:
    """The records folder of held-out fold `fold`: `validation` itself for fold 0."""
    return Path(validation) if fold == 0 else Path(validation).parent / "validation-folds" / f"fold-{fold}"


def as_registered(step: Step, runs: dict[str, list[dict]]) -> list[dict]:
    """The held-out runs made with `step`'s own config, one per seed, wherever they are filed (some were
    made under a draft name or as a variant of another step); those filed under the step's name first."""
    by_seed: dict[int, dict] = {}
    for name in sorted(runs, key=lambda n: n != step.name):
        for r in runs[name]:
            if str(r.get("evaluated_on")).startswith("validation") and not changed_run_fields(step, r["config"]):
                by_seed.setdefault(r["seed"], r)
    return [by_seed[seed] for seed in sorted(by_seed)]


@dataclass(frozen=True)
class Rule:
    """What a variant must show to be worth a test-set run: set before screening, the same for every screen.

    Why these numbers: paired differences between our 8k/6k steps move from fold to fold with a
    standard deviation of about 0.09 % (seed 0, folds 0-5). On six such pairs, simulated with normal noise,
    the rule passes a variant that is no better 4-7 % of the time, one that is +0.05 % better 34-39 %
    and one that is +0.1 % better 74-85 %: it resolves a tenth of a percent, not less.

    The gate on the lowest accuracy of the last epochs was added after step 15, which passed the first
    three conditions while its minima fell on every fold (by 0.16 % on average), and then missed the
    mission's floor on every test seed exactly as those minima had warned: the mission judges the last
    epochs, so a screen must judge them too.
    """

    min_gain: float = 0.05  # percent: the paired mean gain over all (fold, seed) pairs
    min_ahead: float = 0.75  # the share of pairs in which the variant must finish ahead of the step
    min_pairs: int = 6  # fewer pairs judge nothing: the pass rates above hold for six
    min_floor_change: float = 0.0  # percent: the paired mean change of the lowest accuracy over the last epochs

    def __post_init__(self):  # a nan gain would compare False with every mean and pass nothing, silently
        check(in_range(self.min_gain, -100, 100), "min_gain", self.min_gain, "a gain in percent, from -100 to 100")
        check(in_range(self.min_ahead, 0, 1), "min_ahead", self.min_ahead, "a share of the pairs in [0, 1]")
        check(is_whole(self.min_pairs, 1, 10**6), "min_pairs", self.min_pairs, "a whole number of pairs ≥ 1")
        check(in_range(self.min_floor_change, -100, 100), "min_floor_change", self.min_floor_change,
              "a change in percent, from -100 to 100")

    def ahead_needed(self, n: int) -> int:
        return math.ceil(self.min_ahead * n - 1e-9)

    def describe(self) -> str:
        return (f"a paired mean gain ≥ {self.min_gain:+g} % and ahead in ≥ {self.min_ahead:.0%} of the pairs, "
                f"over at least {self.min_pairs} (fold, seed) pairs, with the lowest accuracy of the last "
                f"{LAST_EPOCHS} epochs changed by ≥ {self.min_floor_change:+.2f} % on average")


@dataclass(frozen=True)
class Pair:
    fold: int
    seed: int
    base: float  # final held-out accuracy of the step as registered, percent
    variant: float  # the variant's, same fold and seed; nan when the variant diverged
    base_min: float = math.nan  # the step's lowest held-out accuracy over the last LAST_EPOCHS epochs
    variant_min: float = math.nan  # the variant's: a gain that comes with dips would break the mission's floor
    # The engine generations the two runs were made under (survival.record_generation). A screen may pair a
    # variant trained today with the step's fold runs of an older engine: rounding apart, the same recipe.
    generations: tuple[int | None, int | None] = (None, None)

    @property
    def delta(self) -> float:
        return self.variant - self.base


def pairs(step: Step, variant: Step | str, folds: dict[int, dict[str, list[dict]]]) -> list[Pair]:
    """Every (fold, seed) in which both the step as registered and the variant ran to the end.

    A variant given as a Step pairs its runs wherever they are filed (matched by config, like the step's),
    so the same config screened against another step is not trained twice; given as a name, the runs
    filed under that name."""
    def by_seed(records: list[dict]) -> dict[int, tuple[float, float, int | None]]:
        # A run that diverged has no final accuracy: nan, which fails the variant's screen (verdict).
        finals = final_accuracies(records)
        return {r["seed"]: (finals[r["seed"]], lowest_of_last(r["history"], LAST_EPOCHS), record_generation(r))
                if r["seed"] in finals else (math.nan, math.nan, record_generation(r)) for r in records}

    out = []
    for k, runs in sorted(folds.items()):
        base = by_seed(as_registered(step, runs))
        theirs = by_seed(as_registered(variant, runs) if isinstance(variant, Step) else
                         [r for r in runs.get(variant, []) if str(r.get("evaluated_on")).startswith("validation")])
        out += [Pair(k, s, base[s][0], theirs[s][0], base[s][1], theirs[s][1], (base[s][2], theirs[s][2]))
                for s in sorted(base.keys() & theirs.keys()) if not math.isnan(base[s][0])]
    return out


def verdict(found: list[Pair], rule: Rule = Rule()) -> dict:
    """The pairs' mean gain, 95 % CI and how many the variant leads, and whether they pass `rule`.

    The statistics are over the pairs in which the variant finished; a variant that diverged in any
    pair fails, however the others went."""
    if not found:
        return {"n": 0, "passed": False, "text": "no (fold, seed) ran both"}
    diverged = [p for p in found if math.isnan(p.variant)]
    finished = [p for p in found if not math.isnan(p.variant)]
    deltas = [p.delta for p in finished]
    mean = statistics.fmean(deltas) if deltas else math.nan
    ahead = sum(d > 0 for d in deltas)
    # nan when a pair has no minima (fewer epochs than the window): then the minima do not judge
    floor_change = statistics.fmean(p.variant_min - p.base_min for p in finished) if finished else math.nan
    complete = len(found) >= rule.min_pairs
    passed = (complete and not diverged and at_least(mean, rule.min_gain) and ahead >= rule.ahead_needed(len(deltas))
              and (math.isnan(floor_change) or at_least(floor_change, rule.min_floor_change)))
    if diverged:
        text = "fails: diverged on " + ", ".join(f"fold {p.fold} seed {p.seed}" for p in diverged)
    elif not complete:
        text = f"incomplete: {len(deltas)} of the {rule.min_pairs} pairs the rule needs"
    else:
        text = f"{'passes' if passed else 'fails'}: {rule.describe()} (needs {rule.ahead_needed(len(deltas))} of {len(deltas)} ahead)"
    if across := across_generations(found):
        text += f"; paired across engines: {across}"
    return {"n": len(found), "mean": mean, "ci95": confidence_interval95(deltas), "ahead": ahead,
            "floor_change": floor_change, "passed": passed,
            "folds": sorted({p.fold for p in found}), "text": text, "across": across}


def across_generations(found: list[Pair]) -> str:
    """'' when every pair's two runs were made under one engine generation; else what the step's and the
    variant's runs were made under, e.g. "the step's runs engine generation 1, the variant's 2"."""
    if all(a == b for a, b in (p.generations for p in found)):
        return ""
    named = lambda gens: ", ".join(sorted({"unknown" if g is None else str(g) for g in gens}))
    return (f"the step's runs engine generation {named(p.generations[0] for p in found)}, "
            f"the variant's {named(p.generations[1] for p in found)}")


def to_train(step: Step, variant: Step, folds: dict[int, dict[str, list[dict]]], fold_ids: list[int],
             seeds: list[int]) -> list[tuple[Step, int, int]]:
    """(step or variant, fold, seed) still to be trained for a screen over `fold_ids` x `seeds`. A run
    that diverged counts as done: training it again would give the same history."""
    todo = []
    for k in fold_ids:
        runs = folds.get(k, {})
        have_base = {r["seed"] for r in as_registered(step, runs)}
        have_variant = {r["seed"] for r in as_registered(variant, runs)}
        todo += [(step, k, s) for s in seeds if s not in have_base]
        todo += [(variant, k, s) for s in seeds if s not in have_variant]
    return todo


# The fields that change how a trained network is judged and nothing of its training: a variant that changes
# only these ends with the step's weights bit for bit (steps 18 and 19 show it), so its final accuracy can be
# measured on the step's saved fold runs in minutes instead of trained again.
VIEW_FIELDS = frozenset({"tta", "tta_rotations"})


def views_only(step: Step, other: Step) -> bool:
    """Whether `other` is `step` judged otherwise: it changes VIEW_FIELDS and nothing else, so its runs end with
    `step`'s weights bit for bit and are evaluated on them instead of trained again (train_many's views, run's
    riders, the report's "trained as", a screen's preview)."""
    changed = set(config_diff(step, other))
    return bool(changed) and changed <= VIEW_FIELDS


def check_views_only(step: Step, variant: Step) -> None:
    """Raises ValueError unless views_only(step, variant)."""
    if not views_only(step, variant):
        changed = config_diff(step, variant)
        raise ValueError(f"a preview measures other test-time views ({', '.join(sorted(VIEW_FIELDS))}) on the "
                         f"step's saved weights; this variant changes {', '.join(sorted(changed)) or 'nothing'}")


# --- text for the command line ---------------------------------------------------------------

def screen_text(found: list[Pair], step_name: str, variant_name: str, rule: Rule = Rule()) -> str:
    """The screen's pairs, fold by fold, and the rule's verdict on them."""
    rows = [[p.fold, p.seed, f"{p.base:.2f}", *(["diverged", "", f"{p.base_min:.2f}", ""] if math.isnan(p.variant) else
             [f"{p.variant:.2f}", f"{p.delta:+.2f}", f"{p.base_min:.2f}", f"{p.variant_min:.2f}"])] for p in found]
    lines = [text_table(rows, ["fold", "seed", step_name, "variant", "variant - step", "step min, last 5",
                               "variant min, last 5"])]
    v = verdict(found, rule)
    if v["n"] and not math.isnan(v["mean"]):
        lines.append(f"mean {v['mean']:+.3f} % [95 % CI {v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}], ahead in {v['ahead']} "
                     f"of {v['n']}, lowest of the last 5 changed by {v['floor_change']:+.3f} % on average")
    return "\n".join(lines + [f"{variant_name} {v['text']}"])


def preview_text(found: list[Pair], step_name: str, variant_name: str) -> str:
    """A preview's pairs (final epoch only, from saved weights) and their mean: no verdict."""
    lines = [text_table([[p.fold, p.seed, f"{p.base:.2f}", f"{p.variant:.2f}", f"{p.delta:+.2f}"] for p in found],
                        ["fold", "seed", step_name, "variant", "variant - step"])]
    if found:
        deltas = [p.delta for p in found]
        low, high = confidence_interval95(deltas)
        lines.append(f"mean {statistics.fmean(deltas):+.3f} % [95 % CI {low:+.3f}, {high:+.3f}], ahead in "
                     f"{sum(d > 0 for d in deltas)} of {len(deltas)}")
    return "\n".join(lines + [f"{variant_name}: a preview of the final epoch from saved weights, not a verdict; the rule "
                              f"also judges each of the last {LAST_EPOCHS} epochs, which only the screen's runs measure"])

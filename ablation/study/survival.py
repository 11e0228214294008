"""Does a step's claim survive the next seed? A predicted miss rate from the seeds it was judged on, and
the verdict of its confirmation seeds (fresh seeds fixed before they ran, reports/confirmation).

The criterion is each seed's lowest test accuracy over the last N epochs against the floor. With five to
ten seeds, two numbers, each honest in its own way:

- the predicted chance that a new seed misses: a normal model of the lowest-of-last-N with its mean and
  spread estimated from the n seeds, i.e. the Student-t prediction for one more draw (mean + s·√(1+1/n)·t,
  n−1 degrees of freedom), which widens as n shrinks; the floor is taken half an image below the bar,
  since accuracies come in steps of one image (0.01 % of 10,000);
- an interval that assumes no shape at all: Clopper-Pearson's exact 95 % interval on the miss rate
  from the k misses seen in n seeds (0 of 10 still allows up to 31 %).
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from .analysis import at_least, final_accuracies, holds_floor, lowest_of_last, mean_std, t95
from .step import Goals, Step

RESOLUTION = 0.01  # percent: one test image in 10,000
THIN = 0.05  # a predicted miss rate from this up makes a pass "narrow" in the verdict
FRESH = 10  # the chance that this many fresh seeds all hold is shown beside the rate
CONFIRMATION_RUNS = Path("reports/confirmation")


def t_cdf(x: float, df: int) -> float:
    """P(T <= x) for Student's t with `df` degrees of freedom (Simpson's rule on the density; no SciPy)."""
    if df <= 0:
        return math.nan
    const = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    density = lambda t: const * (1 + t * t / df) ** (-(df + 1) / 2)
    steps, edge = 2000, abs(x)
    h = edge / steps
    area = density(0) + density(edge) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
    half = area * h / 3
    return 0.5 + half if x >= 0 else 0.5 - half


def _binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


def _root(increasing, lo: float = 0.0, hi: float = 1.0) -> float:
    """Where an increasing function of [lo, hi] crosses zero, by bisection."""
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if increasing(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval for a rate seen k times in n."""
    alpha = (1 - level) / 2
    low = 0.0 if k == 0 else _root(lambda p: 1 - _binomial_cdf(k - 1, n, p) - alpha)  # P(X >= k) = alpha
    high = 1.0 if k == n else _root(lambda p: alpha - _binomial_cdf(k, n, p))  # P(X <= k) = alpha
    return low, high


def predicted_miss(lowests: list[float], floor: float) -> dict:
    """What the lowest-of-last-N values of a step's seeds predict for a new seed (see the module's docstring)."""
    n = len(lowests)
    misses = sum(not at_least(x, floor) for x in lowests)
    out = {"n": n, "misses": misses, "rate_ci95": clopper_pearson(misses, n) if n else (math.nan, math.nan),
           "mean": statistics.fmean(lowests) if n else math.nan,
           "sd": statistics.stdev(lowests) if n > 1 else math.nan, "rate": math.nan, "all_fresh_hold": math.nan}
    if n > 1 and out["sd"] > 0:
        scale = out["sd"] * math.sqrt(1 + 1 / n)
        out["rate"] = t_cdf((floor - RESOLUTION / 2 - out["mean"]) / scale, n - 1)
        out["all_fresh_hold"] = (1 - out["rate"]) ** FRESH
    return out


def step_prediction(step: Step, records: list[dict]) -> dict:
    """predicted_miss over the records of the seeds the step was judged on (a diverged run is a miss)."""
    goals = step.goals
    judged = [r for r in records if r["seed"] in step.seeds]
    lowests = [lowest_of_last(r["history"], goals.last_epochs) if r["history"] and r["diverged_at"] is None
               else -math.inf for r in judged]
    finite = [x for x in lowests if math.isfinite(x)]
    out = predicted_miss(finite, goals.accuracy_floor)
    if len(finite) < len(lowests):  # a diverged seed misses, and no normal model covers it
        out["misses"] += len(lowests) - len(finite)
        out["n"] = len(lowests)
        out["rate_ci95"] = clopper_pearson(out["misses"], out["n"])
    out["thin"] = not (out["rate"] < THIN)  # nan (too few seeds to tell) counts as thin
    return out


def holding(goals: Goals, records: list[dict]) -> tuple[list[int], list[int]]:
    """(seeds that hold the floor in each of the last N epochs, seeds that miss it) among `records`."""
    held, missed = [], []
    for r in sorted(records, key=lambda r: r["seed"]):
        (held if holds_floor(r, goals) else missed).append(r["seed"])
    return held, missed


def span(seeds) -> str:
    seeds = sorted(seeds)
    return f"{seeds[0]}–{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1 else \
        ", ".join(map(str, seeds))


def confirmation(step: Step, judged: list[dict], fresh: list[dict]) -> dict | None:
    """The verdict on the judged seeds beside the one on the confirmation seeds (`fresh`, from
    reports/confirmation). None for a step without confirmation seeds."""
    if not step.confirmation_seeds:
        return None
    judged = [r for r in judged if r["seed"] in step.seeds]
    fresh = [r for r in fresh if r["seed"] in step.confirmation_seeds]
    held, missed = holding(step.goals, judged)
    fresh_held, fresh_missed = holding(step.goals, fresh)
    seeds = step.confirmation_seeds
    text = (f"held on {len(held)} of {len(judged)} judged seeds ({span(step.seeds)}); on the confirmation seeds "
            f"({span(seeds)}), fixed before they ran: held on {len(fresh_held)}, missed on {len(fresh_missed)}")
    if len(fresh) < len(seeds):
        text += f" ({len(seeds) - len(fresh)} of the {len(seeds)} not run yet)"
    lowest = lambda r: lowest_of_last(r["history"], step.goals.last_epochs) if r["history"] else None
    return {"seeds": list(seeds), "ran": [r["seed"] for r in fresh], "held": fresh_held, "missed": fresh_missed,
            "lowest": {r["seed"]: lowest(r) for r in fresh},
            "finals": {r["seed"]: r["history"][-1]["test_acc"] for r in fresh if r["history"] and r["diverged_at"] is None},
            "text": text}


def named_misses(seeds: list[int], lowest: dict[int, float | None]) -> str:
    """'seed 4 (99.36 %), seed 7 (diverged)': the seeds that missed the floor, each with its lowest of the last N."""
    return ", ".join(f"seed {s} ({'diverged' if lowest[s] is None else f'{lowest[s]:.2f} %'})" for s in seeds)


# The engine sources whose records count as generation 1 though they do not say so: the records made before
# provenance held a generation. These are the sources the hand-kept ledger of bit-for-bit retrains (each
# "engine A computes engine B's runs", shown by retraining a committed record, history and final weights
# equal) linked to the engine that generation 1's goldens were accepted with, 9aebedc064e2b0c8; frozen here
# when the goldens replaced the ledger (every committed record was current under it then, until generation 2).
GENERATION_1_SOURCES = frozenset({
    "11588d2d7cceddf6", "2533503fae823be5", "28550d30c9d11c61", "51a26b3d08e97189", "56f0cb08803b4819",
    "7e3ddff99949534c", "8fefaa4c0008eff5", "96cf74423d9cea85", "9aebedc064e2b0c8", "a5f11c9dc23a3f15",
    "b25d82b2e5ea2013", "c1bac9d24956e4f8", "d812a75ad785af33", "dbd13a08a816a2d7", "e4cf9bea6712fa7a",
    "e7a6bc10a5564cb2", "f242a2e7096b2db2",
})


def record_generation(record: dict) -> int | None:
    """The engine generation a record was made under: its provenance says so, or, made before provenance
    did, generation 1 when its engine source is one of GENERATION_1_SOURCES; else unknown (None)."""
    p = record["provenance"]
    if "generation" in p:
        return p["generation"]
    return 1 if p.get("source_hash") in GENERATION_1_SOURCES else None


def setup_words(p: dict) -> str:
    """A record's set-up as a user names it: "AMD EPYC, AVX512 (oneDNN: Intel AVX2, capped at AVX2), torch
    2.14.1+cu130, 1 thread, engine generation 2". Records made before provenance held the float path say what
    they hold."""
    where = p.get("device_name") or p.get("device") or "unknown device"
    if str(p.get("device", "cpu")).startswith("cpu"):
        isa = [p["cpu_capability"]] if p.get("cpu_capability") else []
        if p.get("onednn_isa"):
            isa.append(f"oneDNN: {p['onednn_isa']}" + (f", capped at {p['onednn_isa_cap']}" if p.get("onednn_isa_cap") else ""))
        elif p.get("onednn_isa_cap"):
            isa.append(f"oneDNN capped at {p['onednn_isa_cap']}")
        where += f", {isa[0]}" + (f" ({isa[1]})" if len(isa) > 1 else "") if isa else ""
    threads = p.get("threads")
    # The engine generation too: the same set-up computes other numbers under another one (issue 29).
    generation = record_generation({"provenance": p})
    return (f"{where}, torch {p.get('torch')}" + (f", {threads} thread{'s' * (threads != 1)}" if threads else "")
            + (f", engine generation {generation}" if generation is not None else ""))


def set_ups(step: Step, judged: list[dict], elsewhere: dict[str, list[dict]]) -> list[dict]:
    """The claim on each set-up it was measured on: the judged seeds' own first, then each folder of
    `elsewhere` ({folder: records of `step`}, e.g. reports/other-setups/intel-xeon-avx512) by the set-up its
    records name: the seeds that held the floor, k of n, and the misses with their lowest of the last N."""
    out = []
    groups = [("the judged seeds", [r for r in judged if r["seed"] in step.seeds])]
    groups += [(folder, recs) for folder, recs in sorted(elsewhere.items())]
    for folder, recs in groups:
        by_setup: dict[str, list[dict]] = {}
        for r in recs:
            by_setup.setdefault(setup_words(r["provenance"]), []).append(r)
        for where, group in by_setup.items():
            held, missed = holding(step.goals, group)
            lowest = {r["seed"]: lowest_of_last(r["history"], step.goals.last_epochs) if r["history"] and
                      r["diverged_at"] is None else None for r in group}
            named = named_misses(missed, lowest)
            out.append({"folder": folder, "setup": where, "generation": record_generation(group[0]), "n": len(group),
                        "held": held, "missed": missed,
                        "lowest": lowest, "text": f"held on {len(held)} of {len(group)} seeds ({span(sorted(lowest))})"
                                                  + (f", missed on {named}" if named else "")})
    return out


# --- two implementations of one recipe (notebook.py against the engine) ------------------------------

def welch_interval95(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """(mean(b) - mean(a), low, high): the difference of means and its 95 % Welch-t interval (nan without two of each)."""
    if len(a) < 2 or len(b) < 2:
        return (mean_std(b)[0] - mean_std(a)[0]) if a and b else math.nan, math.nan, math.nan
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    va, vb = sa ** 2 / len(a), sb ** 2 / len(b)
    diff, se = mb - ma, math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t95(df) * se
    return diff, diff - half, diff + half


def implementation_of(record: dict) -> str:
    """Which trainer made a record: its provenance says so; the engine's records predate the key."""
    return record["provenance"].get("implementation", "engine")


def _summary(recs: list[dict], goals: Goals) -> dict:
    finals = list(final_accuracies(recs).values())
    lows = [lowest_of_last(r["history"], goals.last_epochs) for r in recs if r["history"] and r["diverged_at"] is None]
    held = [r["seed"] for r in recs if holds_floor(r, goals)]
    (fm, fs), (lm, ls) = mean_std(finals), mean_std(lows)
    return {"n": len(recs), "seeds": [r["seed"] for r in recs], "holding_floor": len(held), "holding_seeds": held,
            "final": finals, "final_mean": fm, "final_std": fs,
            "lowest_last": lows, "lowest_last_mean": lm, "lowest_last_std": ls}


def compare_implementations(engine_records: list[dict], notebook_records: list[dict], goals: Goals) -> dict:
    """Both implementations' distributions over their seeds and the difference of means (notebook - engine).

    Per implementation: n, how many seeds hold the floor (lowest of the last `goals.last_epochs` epochs at or
    above `goals.accuracy_floor`; a diverged run does not), mean and sd of the final accuracy and of that lowest
    value. The differences carry 95 % Welch-t intervals: the seeds of the two are independent draws, never pairs
    (seed k here is not seed k there). Pure: reads records, trains and loads nothing.
    """
    engine, notebook = _summary(engine_records, goals), _summary(notebook_records, goals)
    difference = {}
    for key in ("final", "lowest_last"):
        diff, low, high = welch_interval95(engine[key], notebook[key])
        difference[key] = {"mean": diff, "ci95": (low, high),
                           "beyond_noise": not math.isnan(low) and (low > 0 or high < 0)}
    return {"engine": engine, "notebook": notebook, "difference": difference, "floor": goals.accuracy_floor,
            "last": goals.last_epochs}

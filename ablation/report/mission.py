"""The mission's verdict: its goals judged on the final step's runs, each with its evidence, the margin by
which the lowest judged accuracy clears the floor, and which steps meet the mission on every seed."""
from __future__ import annotations

from ..study.analysis import at_least, holds_floor, lowest_of_last, meets_mission
from ..study.registry import FINAL_STEP, STEPS
from ..study.screen import views_only
from ..study.step import Goals, Step
from ..study.survival import FRESH, setup_words
from .format import count, missing, num

MISSION_GOALS = Goals()  # the mission's goals: Goals' defaults (study/step.py)
MIN_STEPS = 5


def mission_view(step: Step, records: list[dict]) -> dict:
    """The seeds of a step that meet the mission, as "k of n"; met when every planned seed ran and met it."""
    k = sum(map(meets_mission, records))
    met = bool(records) and k == len(records) and set(step.seeds) <= {r["seed"] for r in records}
    text = f"{k} of {len(records)}" + (f" ({len(step.seeds)} planned)" if len(records) < len(step.seeds) else "")
    return {"k": k, "n": len(records), "met": met, "status": "none" if not records else ("met" if met else "miss"),
            "text": text if records else "no runs", "sort": k / len(records) if records else None}


def mission_verdict(views: dict[str, dict], records_by_step: dict[str, list[dict]],
                    layers: dict[str, list[dict]] | None = None) -> dict:
    """The mission's goals judged on FINAL_STEP's runs, each with its evidence, and the conditions the verdict
    holds under (`layers`: measure.py's per-layer tables, for what a prediction costs)."""
    step, records = STEPS[FINAL_STEP], records_by_step.get(FINAL_STEP, [])
    g = MISSION_GOALS
    with_runs = sum(1 for name in STEPS if records_by_step.get(name))
    rows = [{"goal": f"≥ {MIN_STEPS} steps in the ablation, each with runs", "met": with_runs >= MIN_STEPS,
             "evidence": f"{with_runs} of {len(STEPS)} registry steps have run records"}]
    if not records:
        none = f"no runs of {FINAL_STEP}"
        rows = [{"goal": goal, "met": False, "evidence": none} for goal in
                (f"< {g.max_params + 1:,} parameters", f"≥ {g.accuracy_floor:g} % test accuracy in each of the last "
                 f"{g.last_epochs} epochs", f"≤ {g.max_epochs} epochs", "on every seed")] + rows
    else:
        params = max(r["params"] for r in records)
        holds = [holds_floor(r, g) for r in records]
        tails = [lowest_of_last(r["history"], g.last_epochs) for r in records if r["history"]]
        epochs = max(len(r["history"]) for r in records)
        every = [h and r["params"] <= g.max_params and len(r["history"]) <= g.max_epochs for h, r in zip(holds, records)]
        run_seeds = {r["seed"] for r in records}
        planned = set(step.seeds)
        rows = [
            {"goal": f"< {g.max_params + 1:,} parameters", "met": params <= g.max_params,
             "evidence": f"{params:,} parameters"},
            {"goal": f"≥ {g.accuracy_floor:g} % test accuracy in each of the last {g.last_epochs} epochs",
             "met": all(holds), "evidence": f"held on {sum(holds)}/{len(records)} seeds; lowest of the last "
                                            f"{g.last_epochs} epochs over all seeds: {num(min(tails) if tails else None)} %"},
            {"goal": f"≤ {g.max_epochs} epochs", "met": epochs <= g.max_epochs,
             "evidence": f"{epochs} epochs trained (of {step.epochs} configured)"},
            {"goal": "on every seed", "met": all(every) and planned <= run_seeds,
             "evidence": f"{sum(every)}/{len(records)} seeds meet all of the above, on "
                         f"{' and '.join(sorted({setup_words(r['provenance']) for r in records}))}; "
                         f"{len(run_seeds & planned)} of {len(planned)} planned seeds run (other set-ups: above)"
                         + new_seeds_words(views[FINAL_STEP]["prediction"])},
        ] + rows
    view = views[FINAL_STEP]
    meeting = steps_meeting_mission(records_by_step)
    return {"step": FINAL_STEP, "rows": rows, "met": all(r["met"] for r in rows), "margin": margin(records),
            "view": view, "own": view["verdict"], "own_goals": view["goals"],
            "meeting": [f"{name} ({records_by_step[name][0]['params']:,} parameters, {len(records_by_step[name])} of "
                        f"{len(records_by_step[name])} seeds)" for name in meeting],
            "conditions": conditions(views, meeting, layers or {}) if records else []}


def new_seeds_words(p: dict | None) -> str:
    """'; a new seed misses with a predicted 5.3 %, one of 10 new seeds with 42 %': what "every seed" means for
    the seeds not yet run (empty when there is no prediction)."""
    if not p or missing(p["rate"]):
        return ""
    return (f"; a new seed misses with a predicted {p['rate_text']}, at least one of {FRESH} new seeds with "
            f"{100 * (1 - p['all_fresh_hold']):.0f} %")


def trained_as(step: Step) -> Step | None:
    """The step whose training `step` is (its parent, when they differ only in test-time views), else None."""
    parent = STEPS.get(step.parent or "")
    return parent if parent and views_only(parent, step) else None


def on_interval(what: str, mean: float, ci: tuple[float, float], bar: float) -> str:
    """A goal on a mean judged on its 95 % interval too: met with the interval above the bar, met on the point
    estimate only (the interval straddles the bar), or not met."""
    lo, hi = ci
    goal = f"{what} ≥ {bar:g} %"
    if missing(lo):
        return f"{goal}: {'met' if at_least(mean, bar) else 'not met'} at {num(mean, 3)} %, one seed gives no interval"
    interval = f"95 % interval [{num(lo)}, {num(hi)}]"
    if not at_least(mean, bar):
        return f"{goal}: not met, {num(mean, 3)} % ({interval})"
    if at_least(lo, bar):
        return f"{goal}: met, {num(mean, 3)} %, and so is its {interval}"
    return (f"{goal}: met on the point estimate only, {num(mean, 3)} %; its {interval} straddles the bar, so these "
            f"seeds cannot tell it from a miss")


def conditions(views: dict[str, dict], meeting: list[str], layers: dict[str, list[dict]]) -> list[str]:
    """What the final step's verdict holds under, beside it (issue 30: a skeptical reader's questions): what a
    prediction costs when it averages views, how the step was chosen (its words' Caveats), which simpler steps
    already meet the mission, and its stricter goal on a mean judged on its interval."""
    step, view = STEPS[FINAL_STEP], views[FINAL_STEP]
    out = []
    if step.views > 1:
        macs = sum(r["macs"] for r in layers.get(FINAL_STEP, []))
        cost = f": {count(macs * step.views)} multiply-adds a test image instead of {count(macs)}" if macs else ""
        text = f"Each prediction averages {step.views} views, {step.describe_views()}{cost}."
        if host := trained_as(step):
            alone = views[host.name]["mission"]
            text += f" The weights are {host.name}'s, trained as they are; without the views {host.name} " + (
                f"meets the mission on {alone['text']} seeds." if alone["n"] else "has no runs here.")
        out.append(text)
    if step.caveats:
        out.append(step.caveats)
    plain = [name for name in meeting if STEPS[name].views == 1 and name != FINAL_STEP]
    out.append(f"Without test-time views, {', '.join(plain)} already meet{'s' if len(plain) == 1 else ''} the mission "
               f"on every seed {'it was' if len(plain) == 1 else 'they were'} planned for." if plain else
               "No step without test-time views meets the mission on every seed it was planned for.")
    if step.goals.mean_final_floor and not missing(view["final_mean"]):
        out.append(f"Its stricter goal, {on_interval('mean final accuracy', view['final_mean'], view['ci'], step.goals.mean_final_floor)}.")
    return out


def margin(records: list[dict]) -> dict | None:
    """How far the lowest accuracy of the judged window, over all seeds, is from the floor: in percent and in
    test images (10,000 images: 0.01 % is one image), and where it is (seed, epoch)."""
    g = MISSION_GOALS
    tails = [(row["test_acc"], r["seed"], row["epoch"], r["provenance"].get("eval_images") or 10_000)
             for r in records if r["diverged_at"] is None for row in r["history"][-g.last_epochs:]]
    if not tails:
        return None
    low, seed, at, images = min(tails, key=lambda t: t[:3])
    # correct images, each rounded to the whole image it is, so the difference is a whole number of images
    images_over = round(low * images / 100) - round(g.accuracy_floor * images / 100)
    return {"lowest": low, "seed": seed, "epoch": at, "images": images, "over": images_over,
            "percent": 100 * images_over / images, "holds": at_least(low, g.accuracy_floor)}


def steps_meeting_mission(records_by_step: dict[str, list[dict]]) -> list[str]:
    """The name of every step (registry order) whose runs meet the mission's goals on all of its planned seeds.

    A fact about the records, listed beside the verdict; the verdict itself stays on FINAL_STEP,
    fixed before any run, so no step is picked for it by its test accuracy.
    """
    out = []
    for name, step in STEPS.items():
        records = records_by_step.get(name, [])
        if mission_view(step, records)["met"]:
            out.append(name)
    return out

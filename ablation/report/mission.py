"""The mission's verdict: its goals judged on the final step's runs, each with its evidence, the margin by
which the lowest judged accuracy clears the floor, and which steps meet the mission on every seed."""
from __future__ import annotations

from ..study.analysis import at_least, holds_floor, lowest_of_last, meets_mission
from ..study.registry import FINAL_STEP, STEPS
from ..study.step import Goals, Step
from ..study.survival import setup_words
from .format import num

MISSION_GOALS = Goals()  # the mission's goals: Goals' defaults (study/step.py)
MIN_STEPS = 5
# percent: the mean final accuracy the steps from 9 on ask of themselves, drawn for reference; the final
# step's own goal, read from the registry so that the line drawn cannot drift from the goal judged
STRICTER_BAR = STEPS[FINAL_STEP].goals.mean_final_floor


def mission_view(step: Step, records: list[dict]) -> dict:
    """The seeds of a step that meet the mission, as "k of n"; met when every planned seed ran and met it."""
    k = sum(map(meets_mission, records))
    met = bool(records) and k == len(records) and set(step.seeds) <= {r["seed"] for r in records}
    text = f"{k} of {len(records)}" + (f" ({len(step.seeds)} planned)" if len(records) < len(step.seeds) else "")
    return {"k": k, "n": len(records), "met": met, "status": "none" if not records else ("met" if met else "miss"),
            "text": text if records else "no runs", "sort": k / len(records) if records else None}


def mission_verdict(views: dict[str, dict], records_by_step: dict[str, list[dict]]) -> dict:
    """The mission's goals judged on FINAL_STEP's runs, each with its evidence."""
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
                         f"{len(run_seeds & planned)} of {len(planned)} planned seeds run (other set-ups: above)"},
        ] + rows
    view = views[FINAL_STEP]
    return {"step": FINAL_STEP, "rows": rows, "met": all(r["met"] for r in rows), "margin": margin(records),
            "view": view, "own": view["verdict"], "own_goals": view["goals"],
            "meeting": steps_meeting_mission(records_by_step)}


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
    """Every step (registry order) whose runs meet the mission's goals on all of its planned seeds.

    A fact about the records, listed beside the verdict; the verdict itself stays on FINAL_STEP,
    fixed before any run, so no step is picked for it by its test accuracy.
    """
    out = []
    for name, step in STEPS.items():
        records = records_by_step.get(name, [])
        if mission_view(step, records)["met"]:
            out.append(f"{name} ({records[0]['params']:,} parameters, {len(records)} of {len(records)} seeds)")
    return out

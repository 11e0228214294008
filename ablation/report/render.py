"""Rendering: the views gathered into the templates' context, the Jinja set-up, and the files written.
Rendering is deterministic: the same records (and bench.json) give the same bytes."""
from __future__ import annotations

import os
from pathlib import Path

import jinja2
from markupsafe import Markup

from ..runs.records import DEFAULT_RUNS, atomic_write, is_study_folder, load_all, load_folds, load_measured
from ..study.registry import FINAL_STEP, STEPS
from ..study.screen import Rule
from ..study.step import MISSION
from ..study.survival import FRESH, THIN, confirmation, set_ups
from .charts import ablation_chart, family_chart, step_charts
from .checks import fold_view, implementations_view, reproduction_view, screen_view, validation_view
from .format import breakable, count, epoch, num, signed, sort_key
from .mission import MISSION_GOALS, mission_verdict
from .mistakes import confusion_view, mistakes_view
from .provenance import bench_view, load_bench, provenance_view
from .search import searches_view
from .steps import layer_rows, step_view, tree
from .study import update_study

TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_OUT = {"html": Path("reports/ablation.html"), "md": Path("reports/ablation.md")}
OTHER_SETUPS = "other-setups"  # beside the records: a folder of records per other machine or float path


def _env(autoescape: bool):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(num=num, signed=signed, count=count, epoch=epoch, sort_key=sort_key, breakable=breakable)
    return env


def build_views(records_by_step: dict[str, list[dict]], confirmations: dict[str, list[dict]] | None = None,
                other_setups: dict[str, dict[str, list[dict]]] | None = None,
                layers: dict[str, list[dict]] | None = None) -> dict:
    """The report's context. `confirmations`: the records of the confirmation seeds (reports/confirmation);
    `other_setups`: {folder: its records by step}, the final step trained on other machines or float paths
    (reports/other-setups/*); `layers`: each step's per-layer table (measure.py). The steps come depth first
    (steps.tree), each with its indent, so the table shows where the ablation branches."""
    views = {name: step_view(STEPS[name], records_by_step.get(name, []), records_by_step.get(STEPS[name].parent or "", []))
             | {"level": level} for name, level in tree(STEPS)}
    for name, view in views.items():
        view["confirmation"] = confirmation(STEPS[name], records_by_step.get(name, []),
                                            (confirmations or {}).get(name, []))
    verdict = mission_verdict(views, records_by_step, layers)
    elsewhere = {folder: by_step[FINAL_STEP] for folder, by_step in (other_setups or {}).items() if by_step.get(FINAL_STEP)}
    verdict["set_ups"] = set_ups(STEPS[FINAL_STEP], records_by_step.get(FINAL_STEP, []), elsewhere)
    others = verdict["set_ups"][1:]  # what the predicted miss rate means in practice: misses seen elsewhere
    # Seed by seed, each set-up's lowest of the last N beside the judged seeds' (issue 29: a new engine generation
    # is a replication on a new float path; which seeds moved, and how far, is what a reader checks).
    seeds = sorted({s for u in verdict["set_ups"] for s in u["lowest"]})
    verdict["by_seed"] = [{"seed": s, "lowest": [u["lowest"].get(s, "") for u in verdict["set_ups"]]} for s in seeds] \
        if others else []
    verdict["elsewhere"] = {"n": sum(u["n"] for u in others), "missed": sum(len(u["missed"]) for u in others)}
    families = list(dict.fromkeys(v["family"] for v in views.values()))
    return {"steps": list(views.values()), "verdict": verdict, "mission": MISSION, "families": families,
            "fresh": FRESH, "thin": THIN,
            "final_step": FINAL_STEP, "floor": MISSION_GOALS.accuracy_floor, "last": MISSION_GOALS.last_epochs,
            "max_epochs": MISSION_GOALS.max_epochs}


def render_html(records_by_step: dict[str, list[dict]], mistakes: dict | None = None, bench: dict | None = None,
                validation: list[dict] | None = None, folds: list[dict] | None = None,
                screens: list[dict] | None = None, confirmations: dict[str, list[dict]] | None = None,
                reproduction: dict | None = None, implementations: list[dict] | None = None,
                layers: dict[str, list[dict]] | None = None,
                other_setups: dict[str, dict[str, list[dict]]] | None = None, searches: dict | None = None) -> str:
    """The report as one self-contained HTML page. `mistakes` is final_mistakes(...)'s answer (None: not
    computed); `bench` the parsed bench.json (None: not measured); `validation` validation_view(...)'s rows;
    `folds` fold_view(...)'s; `screens` screen_view(...)'s; `confirmations` the confirmation seeds' records;
    `reproduction` reproduction_view(...)'s table (a report of fresh runs); `implementations`
    implementations_view(...)'s comparisons; `layers` each step's per-layer table (measure.py); `other_setups`
    the final step's records made elsewhere, by folder (build_views); `searches` searches_view(...)'s (None: no search)."""
    ctx = build_views(records_by_step, confirmations, other_setups, layers)
    ctx["reproduction"], ctx["implementations"] = reproduction, implementations or []
    for view in ctx["steps"]:
        view["charts"] = [Markup(svg) for svg in step_charts(view["step"], records_by_step.get(view["name"], []))]
        children = [(child, records_by_step.get(child.name, [])) for child in STEPS.values() if child.parent == view["name"]]
        view["family_chart"] = Markup(family_chart(view["step"], records_by_step.get(view["name"], []), children))
        view["layers"] = layer_rows((layers or {}).get(view["name"]), view["step"].views)
    ctx["ablation_chart"] = Markup(ablation_chart(
        [{"name": v["name"], "lowests": v["lowests"], "seed_best": v["seed_best"], "params": v["params"],
          "max_params": v["step"].goals.max_params} for v in ctx["steps"]]))
    mistakes = mistakes or {"missing": "not computed"}
    if "confusion" in mistakes:
        mistakes = {**mistakes, "matrix": confusion_view(mistakes["confusion"])}
    ctx.update(mistakes=mistakes, bench=bench_view(bench), provenance=provenance_view(records_by_step),
               validation=validation or [], folds=folds or [], screens=screens or [],
               rule=Rule().describe())
    searches = searches or {"searches": [], "note": None}
    ctx["search"] = {**searches, "searches": [{**v, "chart": Markup(v["chart"])} for v in searches["searches"]]}
    return _env(True).get_template("report.html.j2").render(ctx)


def render_markdown(records_by_step: dict[str, list[dict]], confirmations: dict[str, list[dict]] | None = None,
                    other_setups: dict[str, dict[str, list[dict]]] | None = None,
                    layers: dict[str, list[dict]] | None = None, searches: dict | None = None) -> str:
    """The verdict with its conditions, the summary table, each step's numbers and the searches as Markdown;
    `searches` searches_view(...)'s (None: no search)."""
    ctx = build_views(records_by_step, confirmations, other_setups, layers)
    ctx["search"] = searches or {"searches": [], "note": None}
    return _env(False).get_template("report.md.j2").render(ctx)


def report_path(runs: Path, fmt: str = "html") -> Path:
    """Where the report of the records under `runs` goes: for the study's own folder, reports/runs (however it is
    spelled: '..', an absolute path or a link), reports/ablation.html beside it; inside the folder itself for any
    other, so a scratch folder never overwrites the study's."""
    if is_study_folder(runs, DEFAULT_RUNS):
        return Path(runs).resolve().parent / DEFAULT_OUT[fmt].name
    return Path(runs) / DEFAULT_OUT[fmt].name


def render_files(runs: Path, out: Path | None = None, fmt: str = "html", bench: Path | None = None,
                 validation: Path | None = None) -> list[Path]:
    """Render the records under `runs` to `out` (default reports/ablation.html or .md); return the paths written.

    bench: the speed figures' JSON, by default bench.json beside the runs folder (reports/bench.json).
    validation: the validation runs' folder, by default validation/ beside the runs folder.
    """
    if fmt not in DEFAULT_OUT:
        raise ValueError(f"unknown report format {fmt!r}: html or md")
    runs = Path(runs)
    out = Path(out) if out is not None else DEFAULT_OUT[fmt]
    records_by_step = load_all(runs)
    # The confirmation seeds' records live beside the study's (reports/confirmation), apart from the judged seeds.
    confirmations = load_all(runs.parent / "confirmation")  # {} where there is no such folder
    # The final step trained elsewhere (another CPU, a capped float path): one records folder each.
    other = {f"{path.parent.name}/{path.name}": load_all(path) for path in sorted((runs.parent / OTHER_SETUPS).glob("*/"))}
    measured = load_measured(runs)
    folds = load_folds(Path(validation) if validation is not None else runs.parent / "validation")
    if fmt == "md":
        text = render_markdown(records_by_step, confirmations, other, measured.get("layers"),
                               searches_view(runs.parent / "search", folds))
    else:
        text = render_html(records_by_step, mistakes_view(measured.get("mistakes")),
                           load_bench(bench if bench is not None else runs.parent / "bench.json"),
                           validation_view(folds[0]), fold_view(folds, records_by_step), screen_view(folds),
                           confirmations, reproduction_view(runs),
                           implementations_view(records_by_step, load_all(runs.parent / "notebook")),
                           measured.get("layers"), other, searches_view(runs.parent / "search", folds))
    def write(f) -> None:
        f.write(text.encode())
        os.fchmod(f.fileno(), 0o644)  # the temporary file is private (mkstemp); the report is not

    atomic_write(out, write)
    # The screens' table in STUDY.md beside the records follows them (report/study.py)
    return [out] + ([runs.parent / "STUDY.md"] if fmt == "html" and update_study(runs.parent / "STUDY.md", folds) else [])

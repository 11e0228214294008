"""The command line: `python -m ablation COMMAND --help`, COMMAND one of steps, summary, run, screen, search, report,
measure, bench and notebook.

Nothing imports this module: it parses, checks the arguments and calls the library. An option that several
commands take is declared once, in a parent parser (options.py), so it reads and is checked alike wherever it
is given. A refusal is one line and exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
from pathlib import Path

from .. import build_model, count_parameters
from ..engine import train as training  # through the module: tests replace its functions
from ..engine.data import TRAIN_LABEL_COUNTS, DataError, check_holdout, load_mnist, load_mnist_checked
from ..engine.models import check_network, for_step, layer_summary
from ..reference import bench, notebook
from ..report import render_files, report_path
from ..runs import journal, ray_backend, records
from ..runs import search as searching
from ..runs.measure import measure, preview_views
from ..runs.reproduce import reproduction
from ..runs.runner import Task, run_tasks, training_units
from ..study.analysis import summary_table, text_table as table
from ..study.registry import STEPS, with_overrides
from ..study.screen import (VALIDATION, Rule, as_registered, check_views_only, fold_dir, pairs, preview_text,
                            screen_text, to_train)
from ..study.spaces import SEARCH_FOLD, SEARCH_HOLDOUT, SEARCH_SEEDS, SPACES, space_for
from ..study.step import Step
from .options import (MAX_THREADS, QUICK, Parser, bounded_int, data_options, device_options, engine_details,
                      json_options, positive_int, ray_address, records_options, seed_list, selection_options, step_name,
                      training_options, variant_options)


# --- checks that several commands make before anything loads ----------------------------------------

def variants_and_device(args, steps: list[Step]):
    """`steps` with --set applied, each network checked to fit, and --device; then $ABLATION_THREADS, read now: a
    bad value is refused here and not in every worker after the data is loaded."""
    try:
        variants = [with_overrides(step, args.overrides) for step in steps]
        for variant in variants:
            check_network(variant)
        device = training.resolve_device(args.device)
    except ValueError as e:
        args.parser.error(str(e))
    if args.threads is None and (text := os.environ.get("ABLATION_THREADS")) is not None:
        try:
            args.threads = bounded_int(MAX_THREADS)(text)
        except argparse.ArgumentTypeError as e:
            args.parser.error(f"ABLATION_THREADS {e}")
    return variants, device


def check_backend(args) -> None:
    """Refuse --backend ray where Ray is not installed, and an --address that cannot be used (nothing answers there,
    no local cluster for 'auto', a token Ray refuses), in one line each, before anything loads or trains."""
    if args.backend != "ray":
        if args.address is not None:
            args.parser.error("--address names a Ray cluster: it needs --backend ray")
        return
    try:
        ray_backend.import_ray()
        ray_backend.check_address(args.address)
    except (ray_backend.RayMissing, ray_backend.RayUnreachable) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def probed(args, folder: Path, option: str) -> None:
    """Refuses (exit 2) an output folder that records cannot be written to, before anything trains."""
    try:
        records.probe_output(folder)
    except ValueError as e:
        args.parser.error(f"{option} {e}")


def load_data(args, folds: list[int]):
    """MNIST from --data-dir, with every held-out fold asked for checked to fit before anything trains.
    None when the files cannot be had (the error is printed); a fold that does not fit is a usage error."""
    try:
        data = load_mnist_checked(args.data_dir)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    for k in folds:
        try:
            check_holdout(len(data.train_labels), args.holdout, fold=k)
        except ValueError as e:
            args.parser.error(str(e))
    return data


def train_tasks(tasks: list, args, device, data) -> list[str]:
    """Run the tasks on --backend: the process pool, --jobs at a time (default: one per CPU core, one on a GPU),
    or Ray; return the failed tasks' errors (each printed as it happened)."""
    if args.backend == "ray":
        return ray_backend.run_tasks(tasks, data, address=args.address, num_cpus=args.jobs,
                                     runs_per_gpu=args.runs_per_gpu, max_retries=args.max_retries)
    return run_tasks(tasks, args.jobs or (1 if device.type == "cuda" else os.cpu_count() or 1), data=data)


# --- the commands -------------------------------------------------------------------------------------

def cmd_steps(args) -> int:
    rows = [{"name": s.name, "parent": s.parent, "params": count_parameters(build_model(s.name)), "epochs": s.epochs,
             "batch_size": s.batch_size, "lr": s.describe_lr(), "augment": s.describe_augment(),
             "dropout": s.dropout, "seeds": list(s.seeds), "goals": dataclasses.asdict(s.goals),
             "known_miss": s.known_miss} for s in STEPS.values()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(table([[r["name"], f"{r['params']:,}", r["epochs"], r["batch_size"], r["lr"], r["augment"],
                  STEPS[r["name"]].goals.describe()] for r in rows],
                ["step", "params", "epochs", "batch", "optimiser / lr / schedule", "augmentation", "goals"]))
    return 0


def cmd_summary(args) -> int:
    try:  # a variant's network (--set), e.g. a layout to price before it is screened
        step = with_overrides(args.step, args.overrides)
        model = for_step(step)
    except ValueError as e:
        args.parser.error(str(e))
    print(layer_summary(step, model))
    return 0


def cmd_run(args) -> int:
    if args.quick and records.is_study_folder(args.out, records.DEFAULT_RUNS):
        args.parser.error("--quick runs are smoke tests: give them their own --runs folder, not the reference records")
    if args.fold and not args.holdout:
        args.parser.error("--fold picks a block of the held-out images: it needs --holdout N")
    args.steps, device = variants_and_device(args, args.steps)
    check_backend(args)
    if (data := load_data(args, [args.fold] if args.holdout else [])) is None:
        return 2
    probed(args, args.out, "--runs")
    epochs = 1 if args.quick and args.epochs is None else args.epochs
    refuse_other_lengths(args, epochs)
    todo = [(step, resumed(step, seeds, args, epochs) if args.resume else seeds)
            for step in args.steps for seeds in [args.seeds or list(step.seeds)]]
    tasks = []
    for step, seeds, views in training_units(todo):  # a step that only evaluates differently trains with its parent
        group = args.group or (max(1, len(seeds)) if device.type == "cuda" else 1)
        tasks += [Task(step, seeds[i:i + group], str(device), epochs, args.data_dir, args.holdout, args.threads,
                       QUICK if args.quick else {}, args.out, args.fold, views) for i in range(0, len(seeds), group)]
    errors = train_tasks(tasks, args, device, data)
    print(summary_table(args.steps, records.load_all(args.out), held_out=bool(args.holdout)))
    if args.quick:
        print("(--quick: a smoke run of one epoch on 2,048 images; these numbers judge nothing)")
    if not args.holdout and not args.quick:
        if found := reproduction(args.out, {(step.name, seed) for step in args.steps for seed in (args.seeds or step.seeds)}):
            print("\n" + "\n".join(found))
    if args.holdout and not args.no_report:
        print("no report for held-out runs: the study's report (python -m ablation report) shows those under "
              "reports/validation in its validation tables", file=sys.stderr)
    elif not args.no_report:
        measure_and_render(args.out, args.data_dir)
    return 2 if errors else 0


def refuse_other_lengths(args, epochs: int | None) -> None:
    """A smoke or shortened run never replaces, nor sits beside, runs of another length in --runs (a folder of
    shortened runs of the same length is theirs to resume)."""
    images = sum(TRAIN_LABEL_COUNTS) - args.holdout
    for step in args.steps:
        if (args.quick or (epochs or step.epochs) != step.epochs) and (seeds := records.other_length_seeds(
                records.records_of(args.out, step), images, 0 if args.quick else epochs)):
            kind = "--quick" if args.quick else f"{epochs}-epoch"
            args.parser.error(f"--runs {args.out} holds {step.name} runs of another length (seeds "
                              f"{', '.join(map(str, seeds))}): a {kind} run would replace or mix with them; give it "
                              f"its own --runs folder")


def resumed(step, seeds: list[int], args, epochs: int | None) -> list[int]:
    """The seeds of `step` still to train under --resume; says which records are kept, and why any other
    record found in their place is not."""
    todo, kept, retrained = records.resume(args.out, step, seeds, holdout=args.holdout, fold=args.fold, epochs=epochs)
    for seed, why_not in retrained.items():
        print(f"{step.name} seed {seed}: the record under {args.out} is trained again: {why_not}", file=sys.stderr)
    if kept:
        print(f"{step.name}: seeds {', '.join(map(str, kept))} already recorded under {args.out} by this engine, "
              f"kept (--resume)", file=sys.stderr)
    return todo


def measure_and_render(runs: Path, data_dir) -> None:
    """measured.json, then the report, inside `runs`: the engine measures what the report shows of the final model
    (its mistakes, the layer tables), so that rendering reads files only."""
    print(f"wrote {measure(runs, data_dir)}", file=sys.stderr)
    for path in render_files(runs, report_path(runs)):
        print(f"wrote {path}", file=sys.stderr)


def cmd_screen(args) -> int:
    variant, device, rule = checked_screen(args)
    if (data := load_data(args, args.folds)) is None:
        return 2
    if args.preview:
        return preview(args, variant, data)
    refuse_quick_beside_full(args, variant)
    if not args.dry_run:
        for k in args.folds:
            probed(args, fold_dir(args.validation, k), "--validation")
    todo = to_train(args.step, variant, records.load_folds(args.validation), args.folds, args.seeds)
    print(f"screen {variant.name}: folds {', '.join(map(str, args.folds))} x seeds {', '.join(map(str, args.seeds))}; "
          f"{len(todo)} runs to train, the rest found under {args.validation} and its validation-folds/", file=sys.stderr)
    errors = []
    if args.dry_run:  # what would be trained, then the verdict on what is there now
        for step, k, seed in todo:
            print(f"would train {step.name} seed {seed} on fold {k} into {fold_dir(args.validation, k)}", file=sys.stderr)
    else:
        tasks = [Task(step, [seed], str(device), 1 if args.quick else None, args.data_dir, args.holdout,
                      args.threads, QUICK if args.quick else {}, fold_dir(args.validation, k), k)
                 for step, k, seed in todo]
        errors = train_tasks(tasks, args, device, data)
    print_verdict(args, variant, rule)
    return 2 if errors else 0


def checked_screen(args) -> tuple:
    """screen's arguments checked before anything loads: (the variant, the device, the Rule of --min-gain)."""
    if args.preview and args.dry_run:
        args.parser.error("--preview trains nothing already: it has no --dry-run")
    if args.quick and records.is_study_folder(args.validation, VALIDATION):
        args.parser.error("--quick screens are smoke tests: give them their own --validation folder, not the study's")
    (variant,), device = variants_and_device(args, [args.step])
    if variant.name == args.step.name:
        args.parser.error("a screen compares a variant with its step: give at least one --set FIELD=VALUE")
    check_backend(args)
    try:
        if args.preview:
            check_views_only(args.step, variant)
        rule = Rule(min_gain=args.min_gain)
    except ValueError as e:
        args.parser.error(str(e).replace("min_gain=", "--min-gain "))
    return variant, device, rule


def refuse_quick_beside_full(args, variant: Step) -> None:
    """A smoke screen pairs nothing with, and files nothing beside, the full runs of a study."""
    if args.quick:
        folds, images = records.load_folds(args.validation), sum(TRAIN_LABEL_COUNTS) - args.holdout
        full = [f"fold {k}" for k in args.folds for s in (args.step, variant)
                if records.other_length_seeds(as_registered(s, folds.get(k, {})), images, 0)]
        if full:
            args.parser.error(f"--validation {args.validation} holds full runs of {args.step.name} or the variant "
                              f"({', '.join(dict.fromkeys(full))}): a --quick screen would mix with them; give it "
                              f"its own --validation")


def print_verdict(args, variant: Step, rule: Rule) -> None:
    """The pairs found now in the folds and seeds asked for, and the rule's verdict on them."""
    folds = {k: runs for k, runs in records.load_folds(args.validation).items() if k in args.folds}
    print(screen_text([p for p in pairs(args.step, variant, folds) if p.seed in args.seeds], args.step.name,
                      variant.name, rule))


def preview(args, variant: Step, data) -> int:
    """screen --preview: the step's saved fold weights evaluated under the variant's test-time views."""
    training.configure_threads(args.threads)
    found, left_out = preview_views(args.step, variant, args.validation, data, holdout=args.holdout,
                                    fold_ids=args.folds, seeds=args.seeds,
                                    limit_test=QUICK["limit_test"] if args.quick else None)
    for line in left_out:
        print(f"left out: {line}", file=sys.stderr)
    print(preview_text(found, args.step.name, variant.name))
    return 2 if left_out or not found else 0


def cmd_search(args) -> int:
    try:
        journal.import_optuna()  # lazily, and only here: no other command needs it
        space = space_for(args.step, args.space)
        device = training.resolve_device(args.device)
    except journal.OptunaMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        args.parser.error(str(e))
    check_backend(args)
    out = args.out or (Path("build/search-quick") if args.quick else searching.DEFAULT_OUT) / args.step.name
    try:
        data = searching.training_data(args.data_dir)  # the training set only: a search never holds the test set
        check_holdout(len(data.train_labels), args.holdout, fold=SEARCH_FOLD)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        args.parser.error(f"--{e}")  # "holdout size must be between ..."
    probed(args, out, "--out")
    s = searching.Search(args.step, space, out, args.max_params or args.step.goals.max_params, args.holdout,
                         epochs=2 if args.quick else None, quick=QUICK if args.quick else {}, data_dir=args.data_dir,
                         threads=args.threads, device=str(device))
    try:
        return searching.search(s, args.trials, jobs=args.jobs, backend=args.backend, address=args.address, data=data)
    except ValueError as e:  # --out holds another search
        args.parser.error(str(e))


def cmd_report(args) -> int:
    if not args.runs.is_dir():
        args.parser.error(f"--runs {args.runs} is not a folder of records")
    if args.out is not None and args.out.is_dir():
        args.parser.error(f"--out {args.out} is a folder: name the report's file, e.g. {args.out / ('ablation.' + args.format)}")
    for path in render_files(args.runs, args.out, fmt=args.format):
        print(f"wrote {path}")
    return 0


def cmd_measure(args) -> int:
    if not args.runs.is_dir():
        args.parser.error(f"--runs {args.runs} is not a folder of records")
    print(f"wrote {measure(args.runs, args.data_dir)}")
    return 0


def cmd_bench(args) -> int:
    try:
        device = training.resolve_device(args.device)
        bench.check_batches(args.batches)
        data = None if args.against else load_mnist(args.data_dir)  # --against: each bench loads its own
    except (ValueError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.against:
        passed = ["--batches", str(args.batches), "--device", args.device] + (["--data-dir", args.data_dir] if args.data_dir else [])
        try:
            compared = bench.against(args.against, args.rounds, passed)
        except (ValueError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps(compared, indent=1) if args.json else bench.format_against(compared))
        return 0
    figures = bench.run(device, args.batches, args.seeds, args.data_dir, data=data)
    text = json.dumps(figures, indent=1)
    if args.save:
        records.atomic_write(args.save, lambda f: f.write((text + "\n").encode()))
        print(f"wrote {args.save}", file=sys.stderr)
    print(text if args.json else bench.format_table(figures))
    return 0


def cmd_notebook(args) -> int:
    if args.compare:
        return notebook.print_comparisons(args.compare, args.runs, args.steps, args.seeds)
    if args.quick and args.runs == notebook.DEFAULT_OUT:
        args.parser.error("--quick runs are smoke tests: give them their own --runs folder, not the notebook records")
    if args.like_engine and args.runs == notebook.DEFAULT_OUT:
        args.parser.error("--like-engine runs are one-change checks: give them their own --runs folder, not the "
                          "notebook records")
    try:
        for step in args.steps:
            notebook.refuse_unsupported(step)
        device = str(training.resolve_device(args.device))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tasks = notebook.tasks_for(args.steps, args.seeds, device=device, out=args.runs, data_dir=args.data_dir,
                               epochs=1 if args.quick and args.epochs is None else args.epochs,
                               quick=QUICK if args.quick else {}, like_engine=args.like_engine)
    return 1 if notebook.run_all(tasks, args.jobs) else 0


# --- the parser ------------------------------------------------------------------------------------------

def build_parser() -> Parser:
    parser = Parser(prog="python -m ablation", description="The command line: train, test and report the MNIST "
                                                           "<10k-parameter ablation, step by step.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data, device, variant, where, as_json = data_options(), device_options(), variant_options(), training_options(), json_options()
    study_records = records_options(records.DEFAULT_RUNS)

    p = sub.add_parser("steps", parents=[as_json], help="print the registry of steps (the ablation as data)")
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("summary", parents=[variant],
                       help="per-layer table of a step's network: shapes, params, MACs, receptive field")
    p.add_argument("step", type=step_name, help=f"a step name, e.g. {list(STEPS)[-1]}")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("run", parents=[selection_options("all"), variant, device, data, where],
                       help="train steps over seeds, write run records, print a summary, render the report",
                       description="Train the steps over their seeds (or --seeds), write one record per run to --runs "
                                   "(default build/runs), print a summary and a reproduction table against the "
                                   "committed study (reports/runs, changed only when named as --runs), and render "
                                   "the report into the --runs folder. A run already recorded there is kept with "
                                   "--resume.")
    p.add_argument("--runs", "--out", dest="out", type=Path, default=Path("build/runs"),
                   help="records folder (default build/runs: fresh runs, compared afterwards with the committed study "
                        "in reports/runs, which changes only when named here)")
    p.add_argument("--group", type=positive_int, default=None,
                   help="seeds trained together in one pass (default: all on cuda, 1 on cpu, where grouping does not pay)")
    p.add_argument("--holdout", type=positive_int, default=0,
                   help="evaluate on N images held out of the training set instead of the test set (for design choices)")
    p.add_argument("--fold", type=int, default=0,
                   help="with --holdout N: hold out the K-th block of N images instead of the first (k-fold "
                        "validation; write each fold to its own --runs)")
    p.add_argument("--no-report", action="store_true",
                   help="do not render the report afterwards (ablation.html inside the --runs folder; "
                        "reports/ablation.html for the committed study, reports/runs)")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already recorded under --runs with the same config, images and epochs, made "
                        "under this engine generation from committed code, and train only the rest: an "
                        "interrupted run picks up where it stopped (--quick runs are never kept)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("screen", parents=[variant, device, data, where],
                       help="k-fold screen: a variant (--set) against its step as registered, on held-out folds",
                       description="Train a step as registered and its variant on held-out folds of the training set "
                                   "(what is already there is reused), pair their final accuracies fold by fold and "
                                   "judge the pairs by a rule fixed in advance: " + Rule().describe() + ". "
                                   "The test set is never touched.")
    p.add_argument("step", type=step_name, help=f"the step the variant changes, e.g. {list(STEPS)[-1]}")
    p.add_argument("--folds", type=seed_list, default=list(range(6)),
                   help="held-out folds, e.g. 0-5 (default: all six disjoint folds of 10,000)")
    p.add_argument("--seeds", type=seed_list, default=[0], help="seeds per fold (default 0)")
    p.add_argument("--holdout", type=positive_int, default=10_000, help="images per fold (default 10000)")
    p.add_argument("--validation", type=Path, default=VALIDATION,
                   help=f"fold 0's records folder; fold K is validation-folds/fold-K beside it (default {VALIDATION})")
    p.add_argument("--min-gain", type=float, default=Rule().min_gain,
                   help=f"percent: the paired mean gain the variant needs (default {Rule().min_gain:g})")
    p.add_argument("--quick", action="store_true",
                   help="smoke screen: one epoch on 2,048 training and 1,000 held-out images, into its own --validation")
    p.add_argument("--dry-run", action="store_true",
                   help="train nothing: list the runs the screen lacks and judge the pairs found so far")
    p.add_argument("--preview", action="store_true",
                   help="for a variant that changes only the test-time views (tta, tta_rotations): train nothing, "
                        "evaluate the step's saved final fold weights under the variant's views, in one process on "
                        "the CPU (a few minutes, where a screen trains six runs; the final epoch only, so a ranking of "
                        "views and no verdict)")
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("search", parents=[device, data],
                       help="a recipe search on held-out data (Optuna): each trial a variant of STEP, trained and recorded",
                       description="Search a declared space of STEP's fields (ablation/study/spaces.py) with Optuna's TPE "
                                   "sampler. The split: every trial trains seeds "
                                   f"{', '.join(map(str, SEARCH_SEEDS))} (used nowhere else) on the training set less "
                                   f"held-out fold {SEARCH_FOLD} and is scored there; the test set is never read. The "
                                   "screen that decides whether a found recipe becomes a step (python -m ablation screen "
                                   "STEP --set ...) runs its own seeds on six folds. The objective, maximised: the "
                                   "lowest held-out accuracy of the last 5 epochs over the seeds; a trial below the "
                                   f"median of the others at an epoch from epoch {searching.PRUNE_AFTER} on is stopped "
                                   "(pruned). The budget: a trial whose network has more than --max-params parameters "
                                   "is refused before it trains. One trial trains the step's own recipe, the baseline the others are read "
                                   "against. Every trained trial is a variant folder of records "
                                   "in --out beside the study's journal (journal.log); to resume, run the same command "
                                   "again: --trials is the study's total, a trial cut short is run again, a trial "
                                   "whose records exist is not retrained. One command at a time per --out. "
                                   f"Needs Optuna: {journal.INSTALL}.")
    p.add_argument("step", type=step_name, help="the step whose recipe is searched, e.g. 13-wide-end-6k or 12-wide-end")
    p.add_argument("--space", default=None, choices=list(SPACES),
                   help="the space searched (default: the one declared for STEP): "
                        + "; ".join(f"{s.name}: {s.about}" for s in SPACES.values()))
    p.add_argument("--trials", type=positive_int, default=30,
                   help="trials trained in the study when done, earlier commands' included (a draw over the budget is "
                        "refused in under a second and does not count; default 30)")
    p.add_argument("--max-params", type=positive_int, default=None,
                   help="the parameter budget, a hard constraint (default: the step's goal, e.g. 6,000 or 8,000)")
    p.add_argument("--holdout", type=positive_int, default=SEARCH_HOLDOUT,
                   help=f"images held out of the training set as fold {SEARCH_FOLD}, what trials are scored on "
                        f"(default {SEARCH_HOLDOUT})")
    p.add_argument("--out", type=Path, default=None,
                   help="the search's folder: its journal and one records folder per trained trial (default "
                        "reports/search/STEP; build/search-quick/STEP with --quick)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="trials at a time: 1 trains in this process (default); N, in N worker processes sharing the "
                        "journal; with --backend ray and no --address, the CPUs of the local Ray")
    p.add_argument("--threads", type=bounded_int(MAX_THREADS), default=None,
                   help="CPU threads per trial (default $ABLATION_THREADS or 1)")
    p.add_argument("--backend", choices=["process", "ray"], default="process",
                   help="process: this process or a pool (--jobs); ray: each trial a Ray task on a local Ray, or a "
                        "cluster (--address) whose every node sees --out on a shared filesystem (the workers write "
                        f"the journal and the records; needs: {ray_backend.INSTALL})")
    p.add_argument("--address", type=ray_address, default=None,
                   help="with --backend ray: HOST:PORT of a Ray head, or 'auto' (default: a local Ray)")
    p.add_argument("--quick", action="store_true",
                   help="smoke search: two epochs on 2,048 training and 1,000 held-out images a trial")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", parents=[study_records],
                       help="render reports/ablation.html (or Markdown) from the run records")
    p.add_argument("--out", type=Path, default=None, help="output file (default reports/ablation.html or .md)")
    p.add_argument("--format", choices=["html", "md"], default="html",
                   help="html: the self-contained page with charts (default); md: the verdict and the table, for GitHub")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("measure", parents=[study_records, data],
                       help="measure what the report shows of the final model (its mistakes on the test set) and "
                            "each step's layer table, into measured.json beside the records")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("bench", parents=[device, data, as_json], help="throughput against the reference notebook loop")
    p.add_argument("--batches", type=positive_int, default=30, help="timed batches per engine (default 30)")
    p.add_argument("--seeds-per-pass", dest="seeds", type=positive_int, default=4,
                   help="how many seeds the multi-seed engine trains in one pass (a count; default 4)")
    p.add_argument("--save", type=Path, default=None, help="also write the JSON figures here (the report reads reports/bench.json)")
    p.add_argument("--against", type=Path, default=None, metavar="DIR",
                   help="compare with another checkout of this project (e.g. a git worktree of the previous engine "
                        "generation): both benches run alternately in fresh processes; medians and ratios")
    p.add_argument("--rounds", type=positive_int, default=3, help="with --against: alternated rounds (default 3)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("notebook", parents=[selection_options("final"), records_options(notebook.DEFAULT_OUT),
                                            device_options("cpu"), data],
                       help="train steps the notebook way (torchvision transforms, DataLoader, torch.optim), or "
                            "compare its records with the engine's",
                       description="Train steps the notebook way (torchvision transforms, DataLoader, torch.optim) "
                                   "and write records marked implementation: notebook; with --compare, set them "
                                   "beside the engine's.")
    p.add_argument("--jobs", type=positive_int, default=1, help="processes, one run and one thread each (default 1)")
    p.add_argument("--like-engine", type=engine_details, default=(), metavar="DETAILS",
                   help=f"a one-change check: take these details from the engine "
                        f"({','.join(notebook.ENGINE_DETAILS)}); give such runs their own --runs folder")
    p.add_argument("--compare", type=Path, default=None, metavar="ENGINE_RUNS",
                   help="train nothing: set the records under --runs beside the engine's under ENGINE_RUNS "
                        "(e.g. reports/runs), step by step, over --seeds if given, else every seed found")
    p.set_defaults(func=cmd_notebook)
    return parser


def _terminated(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.parser = parser
    # `kill PID` (SIGTERM) stops a command as Ctrl-C does: the records written are kept and named, a search's trials
    # cut short are queued again. A command started in the background of a script (`cmd &`) ignores SIGINT, so
    # SIGTERM is the way to stop it cleanly. The handler is put back on return (tests call main in-process).
    on_main_thread = threading.current_thread() is threading.main_thread()  # signal.signal works there only
    previous = signal.signal(signal.SIGTERM, _terminated) if on_main_thread else None
    try:
        return args.func(args)
    except KeyboardInterrupt:  # the runner has said which records were written and which runs were lost
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)

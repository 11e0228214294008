"""The command line: `python -m ablation {steps,summary,run,screen,report,bench} --help`."""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from .study.screen import Rule
from .study.registry import FINAL_STEP, STEPS, get_step, with_overrides
from .study.step import MAX_EPOCHS, MAX_SEED, Goals, Step

# What --quick trains on: a smoke test of the whole path in seconds, one epoch.
QUICK = dict(limit_train=2048, limit_test=1000)
MAX_SEEDS = 1_000  # seeds in one --seeds: more is a typo, not a study
MAX_THREADS = 256


class Parser(argparse.ArgumentParser):
    """argparse, refusing in one line (`python -m ablation run: error: ...`) and exit status 2: a script or
    a log reads the refusal without the usage block (--help shows that)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,2,7' -> [0, 2, 7]; '3' -> [3]."""
    seeds: list[int] = []
    malformed = argparse.ArgumentTypeError(f"malformed seeds {text!r}: use a range like 0-4 or a list like 0,2,7 "
                                           f"of distinct whole numbers from 0 to {MAX_SEED:,}, at most {MAX_SEEDS:,}")
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not (lo.isdigit() and lo.isascii() and (not dash or hi.isdigit() and hi.isascii())):
            raise malformed from None  # '0-', '-3', '1e3', '' or '٣' (isdigit alone takes other scripts' digits)
        if len(lo) > 10 or len(hi) > 10:
            raise malformed
        first, last = int(lo), int(hi) if dash else int(lo)
        if not first <= last <= MAX_SEED or len(seeds) + last - first + 1 > MAX_SEEDS:
            raise malformed  # checked before the range is made: 0-99999999999 would fill the memory
        seeds += range(first, last + 1)
    if len(set(seeds)) != len(seeds):
        raise malformed
    return seeds


def parse_steps(text: str) -> list[Step]:
    if text == "all":
        return list(STEPS.values())
    try:
        steps = [get_step(name.strip()) for name in text.split(",")]
    except KeyError as e:
        raise argparse.ArgumentTypeError(f"{e.args[0]}; or 'final' (the step the mission is judged on, "
                                         f"{FINAL_STEP}), or 'all'") from None
    return list({step.name: step for step in steps}.values())  # a step named twice trains once


def bounded_int(most: int):
    """An argparse type: a whole number from 1 to `most`."""
    def positive_int(text: str) -> int:
        text = text.strip()
        value = int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else 0
        if not 0 < value <= most:
            raise argparse.ArgumentTypeError(f"must be a positive integer up to {most:,}, got {text!r}")
        return value
    return positive_int


positive_int = bounded_int(10**9)


def step_name(text: str) -> Step:
    try:
        return get_step(text)
    except KeyError as e:
        raise argparse.ArgumentTypeError(e.args[0]) from None


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_steps(args) -> int:
    from . import build_model
    from . import count_parameters

    rows = []
    for s in STEPS.values():
        rows.append({"name": s.name, "parent": s.parent, "params": count_parameters(build_model(s.name)),
                     "epochs": s.epochs, "batch_size": s.batch_size, "lr": s.describe_lr(),
                     "augment": s.describe_augment(), "distill": s.distill.describe(), "dropout": s.dropout, "seeds": list(s.seeds),
                     "goals": {"max_params": s.goals.max_params, "accuracy_floor": s.goals.accuracy_floor,
                               "last_epochs": s.goals.last_epochs, "max_epochs": s.goals.max_epochs,
                               "mean_final_floor": s.goals.mean_final_floor},
                     "known_miss": s.known_miss})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(table([[r["name"], f"{r['params']:,}", r["epochs"], r["batch_size"], r["lr"], r["augment"], r["distill"],
                  STEPS[r["name"]].goals.describe()] for r in rows],
                ["step", "params", "epochs", "batch", "optimiser / lr / schedule", "augmentation", "distillation",
                 "goals"]))
    return 0


def cmd_summary(args) -> int:
    from .engine.models import layer_table
    from .engine.models import for_step

    try:  # a variant's network (--set), e.g. a layout to price before it is screened
        step = with_overrides(args.step, args.overrides)
        model = for_step(step)
    except ValueError as e:
        args.parser.error(str(e))
    rows = layer_table(model)
    macs = sum(r["macs"] for r in rows)
    print(f"{step.name}: {step.layout}")
    print(table([[r["layer"], "x".join(map(str, r["output"])), f"{r['params']:,}", f"{r['macs']:,}", r["rf"], r["jump"]]
                 for r in rows] + [["total", "", f"{sum(r['params'] for r in rows):,}", f"{macs:,}", "", ""]],
                ["layer", "output", "params", "MACs", "RF", "jump"]))
    views = 1 + len(step.tta) + len(step.tta_rotations)
    if views > 1:
        # test-time views run the whole network once each: the MACs above, per view
        copies = [f"shifts {list(step.tta)}" if step.tta else "",
                  f"rotations {list(step.tta_rotations)}" if step.tta_rotations else ""]
        print(f"evaluated over {views} views (the image, {' and '.join(c for c in copies if c)}): "
              f"{views * macs:,} MACs per test image")
    return 0


def check_network(step: Step) -> None:
    """ValueError unless `step`'s network takes a 28x28 image to ten outputs (a layout can parse and still
    not fit: a map left larger than 1x1, or shrunk below a kernel)."""
    import torch

    from .engine.models import for_step

    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            for_step(step).eval()(torch.zeros(1, 1, 28, 28))
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"layout={step.layout!r} is not allowed: {str(e).splitlines()[0]}") from None


def threads_from_environment(args) -> None:
    """$ABLATION_THREADS, when --threads leaves the count to it, read now: a bad value is refused here and
    not in every worker after the data is loaded."""
    import os

    if getattr(args, "threads", None) is None and (text := os.environ.get("ABLATION_THREADS")) is not None:
        try:
            args.threads = bounded_int(MAX_THREADS)(text)
        except argparse.ArgumentTypeError as e:
            args.parser.error(f"ABLATION_THREADS {e}")


def probed(args, folder: Path, option: str) -> None:
    """Refuses (exit 2) an output folder that records cannot be written to, before anything trains."""
    from .runs.records import probe_output

    try:
        probe_output(folder)
    except ValueError as e:
        args.parser.error(f"{option} {e}")


def is_study_folder(folder: Path, study: Path) -> bool:
    """Whether `folder` is the study's committed `study` folder (relative to here or to the package's
    checkout) however it is spelled: '..', an absolute path or a link."""
    from .runs.records import PACKAGE

    target = Path(folder).expanduser().resolve()
    return any(target == Path(where, study).resolve() for where in (Path.cwd(), PACKAGE.parent))


def other_length_seeds(records: list[dict], images: int, epochs: int) -> list[int]:
    """The seeds of `records` trained on all `images` of the training set (a --quick run trains on fewer) for
    another number of epochs than `epochs`: runs a run of `epochs` would replace or mix with."""
    from .runs.records import ran_for

    return sorted({r["seed"] for r in records
                   if r["provenance"].get("train_images") == images and not ran_for(r, epochs)})


def records_of(folder: Path, step: Step) -> list[dict]:
    """The readable records filed under `step`'s name in `folder` (a damaged one is named later, by load_all)."""
    from .runs.records import load, record_folder

    found = []
    for path in sorted(record_folder(folder, step.name).glob("seed-*.json")):
        try:
            found.append(load(path))
        except ValueError:
            pass
    return found


def misplaced_data(root: Path) -> None:
    """DataError when MNIST's four files sit in `root` itself or in `root`/raw: the data root was given a
    level or two too deep, and a download there would fail after making empty MNIST/raw folders.
    (Here and not in data.py, an engine file whose every edit makes the committed records stale.)"""
    from .engine.data import ENV_VAR, SHA256, DataError

    for found, meant in ((root, root.parent.parent if root.name == "raw" and root.parent.name == "MNIST" else None),
                         (root / "raw", root.parent if root.name == "MNIST" else None)):
        if all((found / name).is_file() for name in SHA256):
            where = f"--data-dir {meant} (or ${ENV_VAR}={meant})" if meant else f"the files moved into {root}/MNIST/raw"
            raise DataError(f"MNIST's files are in {found}, but the data root is the folder that holds MNIST/raw: "
                            f"give {where}")


def load_data(args, folds: list[int]):
    """MNIST from --data-dir, with every held-out fold asked for checked to fit before anything trains.
    None when the files cannot be had (the error is printed); a fold that does not fit is a usage error."""
    from .engine.data import DataError, check_holdout, data_root, load_mnist

    root = data_root(args.data_dir)
    made = [d for d in (root, root / "MNIST", root / "MNIST" / "raw") if not d.exists()]
    try:
        misplaced_data(root)
        data = load_mnist(args.data_dir)
    except DataError as e:
        for folder in reversed(made):  # what a failed download made, if it left it empty
            try:
                folder.rmdir()
            except OSError:
                pass
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
    import os

    if args.backend == "ray":
        from .runs import ray_backend

        return ray_backend.run_tasks(tasks, data, address=args.address, num_cpus=args.jobs,
                                     runs_per_gpu=args.runs_per_gpu, max_retries=args.max_retries)
    from .runs.runner import run_tasks

    return run_tasks(tasks, args.jobs or (1 if device.type == "cuda" else os.cpu_count() or 1), data=data)


def check_backend(args) -> None:
    """Refuse --backend ray where Ray is not installed, and an --address that cannot be used (nothing answers there,
    no local cluster for 'auto', a token Ray refuses), in one line each, before anything loads or trains."""
    if args.backend != "ray":
        if args.address is not None:
            args.parser.error("--address names a Ray cluster: it needs --backend ray")
        return
    from .runs.ray_backend import RayMissing, RayUnreachable, check_address, import_ray

    try:
        import_ray()
        check_address(args.address)
    except (RayMissing, RayUnreachable) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def reproduction(out: Path, ran: set[tuple[str, int]]) -> tuple[str, str] | None:
    """The reproduction table of the runs asked for, found under `out`, against the committed study: (its
    title, the table and its tally); None when there is nothing fresh to compare (the slow tier prints it too)."""
    from .runs import records
    from .runs import reproduce

    if Path(out).resolve() == records.DEFAULT_RUNS.resolve():
        return None  # these are the committed records themselves
    pairs = reproduce.compare(out, only=ran)
    if not pairs:
        return None
    cells, header = reproduce.rows(pairs)
    return (f"reproduction: {out} against the committed study ({records.DEFAULT_RUNS})",
            "\n".join([table(cells, header), reproduce.tally(pairs), *reproduce.elsewhere(pairs)]))


def resumed(step, seeds: list[int], args, epochs: int | None) -> list[int]:
    """The seeds of `step` still to train under --resume; says which records are kept, and why any other
    record found in their place is not."""
    from .runs.records import record_paths, reuse

    todo, kept = [], []
    for seed in seeds:
        record, why_not = reuse(record_paths(args.out, step.name, seed)[0], step, holdout=args.holdout,
                                fold=args.fold, epochs=epochs)
        if record:
            kept.append(seed)
            continue
        todo.append(seed)
        if why_not != "no record":
            print(f"{step.name} seed {seed}: the record under {args.out} is trained again: {why_not}", file=sys.stderr)
    if kept:
        print(f"{step.name}: seeds {', '.join(map(str, kept))} already recorded under {args.out} by this engine, "
              f"kept (--resume)", file=sys.stderr)
    return todo


def cmd_run(args) -> int:
    from .runs import records
    from .study.analysis import meets_mission, step_summary
    from .engine.data import TRAIN_LABEL_COUNTS
    from .runs.runner import Task
    from .engine.train import resolve_device

    try:
        args.steps = [with_overrides(step, args.overrides) for step in args.steps]
        for step in args.steps:
            check_network(step)
        device = resolve_device(args.device)
    except ValueError as e:
        args.parser.error(str(e))
    threads_from_environment(args)
    check_backend(args)
    if (data := load_data(args, [args.fold] if args.holdout else [])) is None:
        return 2
    probed(args, args.out, "--runs")
    quick = QUICK if args.quick else {}
    epochs = 1 if args.quick and args.epochs is None else args.epochs
    images = sum(TRAIN_LABEL_COUNTS) - args.holdout
    for step in args.steps:  # a smoke or shortened run never replaces, nor sits beside, runs of another length
        # (a folder of shortened runs of the same length is theirs to resume)
        if (args.quick or (epochs or step.epochs) != step.epochs) and (
                seeds := other_length_seeds(records_of(args.out, step), images, 0 if args.quick else epochs)):
            kind = "--quick" if args.quick else f"{epochs}-epoch"
            args.parser.error(f"--runs {args.out} holds {step.name} runs of another length (seeds "
                              f"{', '.join(map(str, seeds))}): a {kind} run would replace or mix with them; give it "
                              f"its own --runs folder")
    tasks = []
    for step in args.steps:
        seeds = args.seeds or list(step.seeds)
        if args.resume:
            seeds = resumed(step, seeds, args, epochs)
        group = args.group or (max(1, len(seeds)) if device.type == "cuda" else 1)
        tasks += [Task(step, seeds[i:i + group], str(device), epochs, args.data_dir, args.holdout, args.threads,
                       quick, args.out, args.fold) for i in range(0, len(seeds), group)]
    errors = train_tasks(tasks, args, device, data)
    # The summary covers every record of the steps asked for, including earlier runs.
    all_records = records.load_all(args.out)
    rows = []
    for step in args.steps:
        recs = all_records.get(step.name, [])
        if recs:
            s = step_summary(recs, step.goals)
            mission = sum(map(meets_mission, recs))
            own = ("the mission's" if step.goals == Goals() else "met" if s["every_seed"] else "not met")
            rows.append([step.name, s["n"], f"{recs[0]['params']:,}", final_cell(s), f"{s['min_of_min_last']:.2f}"
                         if math.isfinite(s["min_of_min_last"]) else "diverged", f"{mission} of {s['n']}", own])
    where = "held-out" if args.holdout else "test"
    print(table(rows, ["step", "seeds", "params", f"final {where} acc %", "lowest of last 5 %", "meet the mission",
                       "its own goals, all seeds"]))
    if args.quick:
        print("(--quick: a smoke run of one epoch on 2,048 images; these numbers judge nothing)")
    if not args.holdout and not args.quick:
        if found := reproduction(args.out, {(step.name, seed) for step in args.steps for seed in (args.seeds or step.seeds)}):
            print("\n" + "\n".join(found))
    if args.holdout and not args.no_report:
        print("no report for held-out runs: the study's report (python -m ablation report) shows those under "
              "reports/validation in its validation tables", file=sys.stderr)
    elif not args.no_report:
        from .runs.measure import measure
        from .report import render_files, report_path

        # The engine measures what the report shows of the final model (its mistakes, the layer tables), so
        # that rendering reads files only.
        print(f"wrote {measure(args.out, args.data_dir)}", file=sys.stderr)
        for path in render_files(args.out, report_path(args.out)):
            print(f"wrote {path}", file=sys.stderr)
    return 2 if errors else 0


def final_cell(summary: dict) -> str:
    """The summary's final accuracy: mean ± std of the runs that finished, and which seeds diverged."""
    diverged = f"seed{'s' * (len(summary['diverged']) > 1)} {', '.join(map(str, summary['diverged']))} diverged"
    if not math.isfinite(summary["final_mean"]):
        return "diverged" if len(summary["diverged"]) == summary["n"] else diverged
    text = f"{summary['final_mean']:.2f} ± {summary['final_std']:.2f}"
    return f"{text} ({diverged})" if summary["diverged"] else text


def cmd_screen(args) -> int:
    from .engine.data import TRAIN_LABEL_COUNTS
    from .runs.runner import Task
    from .runs.records import load_folds
    from .study.screen import Rule, as_registered, check_views_only, fold_dir, pairs, to_train, verdict
    from .engine.train import resolve_device

    try:
        variant = with_overrides(args.step, args.overrides)
        check_network(variant)
        device = resolve_device(args.device)
    except ValueError as e:
        args.parser.error(str(e))
    threads_from_environment(args)
    if variant.name == args.step.name:
        args.parser.error("a screen compares a variant with its step: give at least one --set FIELD=VALUE")
    check_backend(args)
    if args.preview:
        try:
            check_views_only(args.step, variant)
        except ValueError as e:
            args.parser.error(str(e))
    try:
        rule = Rule(min_gain=args.min_gain)
    except ValueError as e:
        args.parser.error(str(e).replace("min_gain=", "--min-gain "))
    if (data := load_data(args, args.folds)) is None:
        return 2
    if args.preview:
        return preview(args, variant, data)
    folds = load_folds(args.validation)
    if args.quick:  # a smoke screen pairs nothing with, and files nothing beside, the full runs of a study
        images = sum(TRAIN_LABEL_COUNTS) - args.holdout
        full = [f"fold {k}" for k in args.folds for s in (args.step, variant)
                if other_length_seeds(as_registered(s, folds.get(k, {})), images, 0)]
        if full:
            args.parser.error(f"--validation {args.validation} holds full runs of {args.step.name} or the variant "
                              f"({', '.join(dict.fromkeys(full))}): a --quick screen would mix with them; give it "
                              f"its own --validation")
    if not args.dry_run:
        for k in args.folds:
            probed(args, fold_dir(args.validation, k), "--validation")
    todo = to_train(args.step, variant, folds, args.folds, args.seeds)
    print(f"screen {variant.name}: folds {', '.join(map(str, args.folds))} x seeds {', '.join(map(str, args.seeds))}; "
          f"{len(todo)} runs to train, the rest found under {args.validation} and its validation-folds/", file=sys.stderr)
    errors = []
    if args.dry_run:  # what would be trained, then the verdict on what is there now
        for step, k, seed in todo:
            print(f"would train {step.name} seed {seed} on fold {k} into {fold_dir(args.validation, k)}", file=sys.stderr)
    else:
        quick = QUICK if args.quick else {}
        tasks = [Task(step, [seed], str(device), 1 if args.quick else None, args.data_dir, args.holdout, args.threads,
                      quick, fold_dir(args.validation, k), k) for step, k, seed in todo]
        errors = train_tasks(tasks, args, device, data)
    folds = {k: runs for k, runs in load_folds(args.validation).items() if k in args.folds}
    found = [p for p in pairs(args.step, variant, folds) if p.seed in args.seeds]
    print(table([[p.fold, p.seed, f"{p.base:.2f}", *(["diverged", "", f"{p.base_min:.2f}", ""] if math.isnan(p.variant) else
                  [f"{p.variant:.2f}", f"{p.delta:+.2f}", f"{p.base_min:.2f}", f"{p.variant_min:.2f}"])] for p in found],
                ["fold", "seed", args.step.name, "variant", "variant - step", "step min, last 5", "variant min, last 5"]))
    v = verdict(found, rule)
    if v["n"] and not math.isnan(v["mean"]):
        print(f"mean {v['mean']:+.3f} % [95 % CI {v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}], ahead in {v['ahead']} of {v['n']}, "
              f"lowest of the last 5 changed by {v['floor_change']:+.3f} % on average")
    print(f"{variant.name} {v['text']}")
    return 2 if errors else 0


def preview(args, variant: Step, data) -> int:
    """screen --preview: the step's saved fold weights evaluated under the variant's test-time views."""
    from .study.analysis import confidence_interval95
    from .runs.measure import preview_views
    from .study.screen import LAST_EPOCHS
    from .engine.train import configure_threads

    configure_threads(args.threads)
    found, left_out = preview_views(args.step, variant, args.validation, data, holdout=args.holdout,
                                    fold_ids=args.folds, seeds=args.seeds,
                                    limit_test=QUICK["limit_test"] if args.quick else None)
    for line in left_out:
        print(f"left out: {line}", file=sys.stderr)
    print(table([[p.fold, p.seed, f"{p.base:.2f}", f"{p.variant:.2f}", f"{p.delta:+.2f}"] for p in found],
                ["fold", "seed", args.step.name, "variant", "variant - step"]))
    if found:
        deltas = [p.delta for p in found]
        low, high = confidence_interval95(deltas)
        print(f"mean {statistics.fmean(deltas):+.3f} % [95 % CI {low:+.3f}, {high:+.3f}], ahead in "
              f"{sum(d > 0 for d in deltas)} of {len(deltas)}")
    print(f"{variant.name}: a preview of the final epoch from saved weights, not a verdict; the rule also judges "
          f"each of the last {LAST_EPOCHS} epochs, which only the screen's runs measure")
    return 2 if left_out or not found else 0


def cmd_report(args) -> int:
    from .report import render_files

    if not args.runs.is_dir():
        args.parser.error(f"--runs {args.runs} is not a folder of records")
    if args.out is not None and args.out.is_dir():
        args.parser.error(f"--out {args.out} is a folder: name the report's file, e.g. {args.out / ('ablation.' + args.format)}")

    for path in render_files(args.runs, args.out, fmt=args.format):
        print(f"wrote {path}")
    return 0


def cmd_measure(args) -> int:
    from .runs.measure import measure

    if not args.runs.is_dir():
        args.parser.error(f"--runs {args.runs} is not a folder of records")
    path = measure(args.runs, args.data_dir)
    print(f"wrote {path}")
    return 0


def cmd_bench(args) -> int:
    from .reference.bench import main as bench_main

    return bench_main(args)


def ray_address(text: str) -> str:
    """An argparse type: --address as ray_backend.parse_address takes it (its reachability is check_backend's)."""
    from .runs.ray_backend import parse_address

    try:
        return parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def retry_count(text: str) -> int:
    """An argparse type: --max-retries, a whole number from 0 to ray_backend.MAX_RETRIES (Ray reads -1 as forever)."""
    from .runs.ray_backend import MAX_RETRIES

    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 6 and int(text) <= MAX_RETRIES):
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_RETRIES}, got {text!r}")
    return int(text)


def add_backend_options(p) -> None:
    from .runs.ray_backend import DEFAULT_RETRIES, INSTALL, MAX_RETRIES

    p.add_argument("--backend", choices=["process", "ray"], default="process",
                   help="process: a pool of worker processes on this machine (default); ray: Ray tasks on a local Ray "
                        f"or a cluster, one CPU (or a share of a GPU) each (needs: {INSTALL})")
    p.add_argument("--address", type=ray_address, default=None,
                   help="with --backend ray: the cluster to use, HOST:PORT of its head or 'auto' (the one `ray start` "
                        "made on this machine); checked before anything loads (default: start a local Ray for this "
                        "command)")
    p.add_argument("--runs-per-gpu", type=positive_int, default=1,
                   help="with --backend ray --device cuda: runs that share one GPU (each asks for 1/N of it; default 1)")
    p.add_argument("--max-retries", type=retry_count, default=DEFAULT_RETRIES,
                   help=f"with --backend ray: times a run whose worker died is tried again, 0 to {MAX_RETRIES} "
                        f"(default {DEFAULT_RETRIES})")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m ablation", description=__doc__.split(":")[0] + ": "
                                     "train, test and report the MNIST <10k-parameter ablation, step by step.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("steps", help="print the registry of steps (the ablation as data)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("summary", help="per-layer table of a step's network: shapes, params, MACs, receptive field")
    p.add_argument("step", type=step_name, help=f"a step name, e.g. {list(STEPS)[-1]}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="the network of a variant, as for run (repeatable), e.g. --set \"layout=('conv3:8', "
                        "'conv3:10', 'conv1:8', 'pool', 'conv3:10', 'conv3:16', 'conv3:16', 'tied3p:16', 'gap', "
                        "'conv1:10')\"")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("run", help="train steps over seeds, write run records, print a summary, render the report",
                       description="Train the steps over their seeds (or --seeds), write one record per run to --runs "
                                   "(default build/runs), print a summary and a reproduction table against the "
                                   "committed study (reports/runs, changed only when named as --runs), and render "
                                   "the report into the --runs folder. A run already recorded there is kept with "
                                   "--resume.")
    p.add_argument("--steps", type=parse_steps, default="all",
                   help="comma-separated step names, 'final' for the step the mission is judged on, or 'all' (default)")
    p.add_argument("--seeds", type=parse_seeds, default=None, help="e.g. 0-4 or 0,3 (default: each step's own seeds)")
    p.add_argument("--epochs", type=bounded_int(MAX_EPOCHS), default=None, help="override every step's epochs")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda when present")
    p.add_argument("--data-dir", default=None, help="folder holding MNIST/raw (default: $ABLATION_DATA, else ./data)")
    p.add_argument("--runs", "--out", dest="out", type=Path, default=Path("build/runs"),
                   help="records folder (default build/runs: fresh runs, compared afterwards with the committed study "
                        "in reports/runs, which changes only when named here)")
    p.add_argument("--group", type=positive_int, default=None,
                   help="seeds trained together in one pass (default: all on cuda, 1 on cpu, where grouping does not pay)")
    p.add_argument("--threads", type=bounded_int(MAX_THREADS), default=None, help="CPU threads per process (default $ABLATION_THREADS or 1)")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="runs trained in parallel processes (default: one per CPU core on cpu, 1 on cuda); with "
                        "--backend ray and no --address, the CPUs of the local Ray")
    add_backend_options(p)
    p.add_argument("--holdout", type=positive_int, default=0,
                   help="evaluate on N images held out of the training set instead of the test set (for design choices)")
    p.add_argument("--fold", type=int, default=0,
                   help="with --holdout N: hold out the K-th block of N images instead of the first (k-fold "
                        "validation; write each fold to its own --runs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="run a variant of each step with a field changed, e.g. --set lr=0.1 --set schedule.final_epoch=12")
    p.add_argument("--quick", action="store_true", help="smoke run: one epoch on 2,048 training and 1,000 test images")
    p.add_argument("--no-report", action="store_true",
                   help="do not render the report afterwards (ablation.html inside the --runs folder; "
                        "reports/ablation.html for the committed study, reports/runs)")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already recorded under --runs with the same config, images and epochs, made "
                        "under this engine generation from committed code, and train only the rest: an "
                        "interrupted run picks up where it stopped (--quick runs are never kept)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("screen", help="k-fold screen: a variant (--set) against its step as registered, on held-out folds",
                       description="Train a step as registered and its variant on held-out folds of the training set "
                                   "(what is already there is reused), pair their final accuracies fold by fold and "
                                   "judge the pairs by a rule fixed in advance: " + Rule().describe() + ". "
                                   "The test set is never touched.")
    p.add_argument("step", type=step_name, help=f"the step the variant changes, e.g. {list(STEPS)[-1]}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="the variant's change, as for run (repeatable), e.g. --set batch_size=64 --set lr=0.1")
    p.add_argument("--folds", type=parse_seeds, default=list(range(6)),
                   help="held-out folds, e.g. 0-5 (default: all six disjoint folds of 10,000)")
    p.add_argument("--seeds", type=parse_seeds, default=[0], help="seeds per fold (default 0)")
    p.add_argument("--holdout", type=positive_int, default=10_000, help="images per fold (default 10000)")
    p.add_argument("--validation", type=Path, default=Path("reports/validation"),
                   help="fold 0's records folder; fold K is validation-folds/fold-K beside it (default reports/validation)")
    p.add_argument("--min-gain", type=float, default=Rule().min_gain,
                   help=f"percent: the paired mean gain the variant needs (default {Rule().min_gain:g})")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda when present")
    p.add_argument("--data-dir", default=None, help="folder holding MNIST/raw (default: $ABLATION_DATA, else ./data)")
    p.add_argument("--threads", type=bounded_int(MAX_THREADS), default=None, help="CPU threads per process (default $ABLATION_THREADS or 1)")
    p.add_argument("--jobs", type=positive_int, default=None, help="runs trained in parallel (default: one per CPU core)")
    add_backend_options(p)
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

    p = sub.add_parser("report", help="render reports/ablation.html (or Markdown) from the run records")
    p.add_argument("--runs", type=Path, default=Path("reports/runs"), help="records folder (default reports/runs)")
    p.add_argument("--out", type=Path, default=None, help="output file (default reports/ablation.html or .md)")
    p.add_argument("--format", choices=["html", "md"], default="html",
                   help="html: the self-contained page with charts (default); md: the verdict and the table, for GitHub")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("measure", help="measure what the report shows of the final model (its mistakes on the test "
                                       "set) and each step's layer table, into measured.json beside the records")
    p.add_argument("--runs", type=Path, default=Path("reports/runs"), help="records folder (default reports/runs)")
    p.add_argument("--data-dir", default=None, help="folder holding MNIST/raw (default: $ABLATION_DATA, else ./data)")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("bench", help="throughput against the reference notebook loop")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda when present")
    p.add_argument("--batches", type=positive_int, default=30, help="timed batches per engine (default 30)")
    p.add_argument("--seeds-per-pass", dest="seeds", type=positive_int, default=4,
                   help="how many seeds the multi-seed engine trains in one pass (a count; default 4)")
    p.add_argument("--data-dir", default=None, help="folder holding MNIST/raw (default: $ABLATION_DATA, else ./data)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--save", type=Path, default=None, help="also write the JSON figures here (the report reads reports/bench.json)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.parser = parser
    # The study's folders are recognised by where they are, not by how their path is spelled.
    if args.command == "run" and args.quick and is_study_folder(args.out, Path("reports/runs")):
        parser.error("--quick runs are smoke tests: give them their own --runs folder, not the reference records")
    if args.command == "screen" and args.preview and args.dry_run:
        parser.error("--preview trains nothing already: it has no --dry-run")
    if args.command == "screen" and args.quick and is_study_folder(args.validation, Path("reports/validation")):
        parser.error("--quick screens are smoke tests: give them their own --validation folder, not the study's")
    if args.command == "run" and args.fold and not args.holdout:
        parser.error("--fold picks a block of the held-out images: it needs --holdout N")
    try:
        return args.func(args)
    except KeyboardInterrupt:  # the runner has said which records were written and which runs were lost
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


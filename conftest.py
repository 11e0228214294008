"""Test-wide set-up: Hypothesis profiles, options, the data root, and a guard that no test leaks RNG state."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# dev: quick local iterations; ci: more examples. Neither has a deadline or the too-slow health check: no test may
# depend on how fast the machine is.
settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Every test process uses the engine's thread count, so results agree between plain and -n runs.
torch.set_num_threads(int(os.environ.get("ABLATION_THREADS", 1)))


def pytest_addoption(parser):
    parser.addoption("--data-dir", default=None, help="folder holding MNIST/raw (default: $ABLATION_DATA, else ./data)")
    group = parser.getgroup("ablation slow tier")
    group.addoption("--steps", default=None, help="comma-separated steps to train, 'final' for the step the mission is judged on (default: all)")
    group.addoption("--seeds", default=None, help="seeds, e.g. 0-4 or 0,2 (default: each step's own)")
    group.addoption("--runs-dir", default="build/runs",
                    help="where fresh records are written (default build/runs; the committed study, reports/runs, "
                         "changes only when named here); each is compared with the committed record")
    group.addoption("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="training device")
    group.addoption("--reuse-records", action="store_true",
                    help="check an existing record of the same config and engine (under --runs-dir, else the "
                         "committed one) instead of training")
    group.addoption("--backend", default="process", choices=["process", "ray"],
                    help="ray: every selected run is submitted to Ray when the session starts, and each test waits "
                         "for its own (no -n needed)")
    group.addoption("--address", default=None, help="with --backend ray: the cluster ('auto', or host:port; default a local Ray)")


# --- the slow tier's selection, shared by tests/test_goals.py and the hooks here ----------------------

def selected_steps(config) -> list:
    from ablation.study.registry import parse_steps

    return parse_steps(config.getoption("--steps") or "all")


def selected_seeds(config, step) -> list[int]:
    """The seeds of `step` selected for its judged runs (--seeds, default its own); its confirmation seeds apart."""
    from ablation.study.registry import parse_seeds

    text = config.getoption("--seeds")
    return [s for s in parse_seeds(text) if s not in step.confirmation_seeds] if text else list(step.seeds)


def selected_confirmation_seeds(config, step) -> list[int]:
    """The step's confirmation seeds selected (--seeds, default all of them)."""
    from ablation.study.registry import parse_seeds

    text = config.getoption("--seeds")
    return [s for s in parse_seeds(text) if s in step.confirmation_seeds] if text else list(step.confirmation_seeds)


def selected_cases(config) -> list[tuple]:
    """(step, seed) of every selected run: each step's judged seeds, then its confirmation seeds."""
    return [(step, seed) for step in selected_steps(config)
            for seed in selected_seeds(config, step) + selected_confirmation_seeds(config, step)]


def selected_runs(config) -> set[tuple[str, int]]:
    return {(step.name, seed) for step, seed in selected_cases(config)}


def training_plan(config) -> dict[tuple[str, int], tuple]:
    """{(step name, seed): (the step that trains it, the steps evaluated on that training)} for every selected run.
    A step that only evaluates differently rides on its parent's training when both are selected for a seed
    (runner.training_units), as `python -m ablation run` trains them: 18-shifted-views on 12-wide-end's."""
    if (plan := getattr(config, "_training_plan", None)) is None:
        from ablation.runs.runner import training_units

        todo = [(step, selected_seeds(config, step) + selected_confirmation_seeds(config, step))
                for step in selected_steps(config)]
        plan = config._training_plan = {(one.name, seed): (step, views) for step, seeds, views in training_units(todo)
                                        for seed in seeds for one in (step, *views)}
    return plan


def task_for(step, seed: int, config):
    """The unit of work that makes one slow-tier run, whichever backend trains it: the run itself, or the
    training it rides on with every step evaluated there (one record each)."""
    from ablation.runs.runner import Task

    trains, views = training_plan(config).get((step.name, seed), (step, ()))
    return Task(trains, [seed], config.getoption("--device"), None, config.getoption("--data-dir"), 0, None, {},
                Path(config.getoption("--runs-dir")), views=views)


def xdist_group(step, seed: int, config) -> str:
    """The xdist group of a run's tests: the step that trains it, so that one worker trains it once for every
    step evaluated on it."""
    return training_plan(config).get((step.name, seed), (step,))[0].name


def reusable_record(step, seed: int, config) -> tuple[dict, Path] | None:
    """With --reuse-records: (record, its weights) of a run that training would only remake, from --runs-dir,
    else from the committed study (its confirmation seeds: reports/confirmation)."""
    from ablation.runs import records
    from ablation.study.survival import CONFIRMATION_RUNS

    if not config.getoption("--reuse-records"):
        return None
    for folder in (Path(config.getoption("--runs-dir")), records.DEFAULT_RUNS, CONFIRMATION_RUNS):
        json_path, weights = records.record_paths(folder, step.name, seed)
        if record := records.reusable(json_path, step):
            return record, weights
    return None


def runs_to_train(cases, config) -> list:
    """Tasks for the runs (step, seed) in `cases` that no reusable record gives, in their order, each once."""
    wanted: dict[tuple[str, int], object] = {}
    for step, seed in cases:
        task = task_for(step, seed, config)
        if (task.step.name, seed) not in wanted and not reusable_record(step, seed, config):
            wanted[task.step.name, seed] = task
    return list(wanted.values())


def slow_cases(items) -> list[tuple]:
    """The (step, seed) runs the collected slow tests need, in test order."""
    params = [item.callspec.params for item in items if hasattr(item, "callspec")]
    return [case for p in params for case in (p.get("run_case"), p.get("repro_case"), p.get("confirmation_case"))
            if isinstance(case, tuple)]


def announce(config, tasks: list) -> None:
    """Say up front how many runs the slow tier trains and about how long it will take on this machine."""
    from ablation.runs.runner import how_long

    if not tasks:
        return
    processes = config.getoption("numprocesses", None) or 1
    if config.getoption("--backend") == "ray":
        processes = 0
    elif not isinstance(processes, int):  # auto, logical
        processes = os.cpu_count() or 1
    config.pluginmanager.get_plugin("terminalreporter").write_line(f"slow tier: {how_long(tasks, processes)}")


def pytest_xdist_node_collection_finished(node, ids):
    """Under -n, on the controller: the first worker's collection says which runs the slow tests need."""
    import re

    config = node.config
    if getattr(config, "_announced", False) or config.getoption("collectonly"):
        return
    config._announced = True
    by_id = {f"{step.name}-seed{seed}": (step, seed) for step, seed in selected_cases(config)}  # the cases' ids
    params = [m[1] for nodeid in ids if nodeid.startswith("tests/test_goals.py::") and (m := re.search(r"\[(.*?)\]", nodeid))]
    announce(config, runs_to_train([by_id[p] for p in params if p in by_id], config))


@pytest.fixture(scope="session")
def data_dir(request) -> Path:
    from ablation.engine.data import SHA256, data_root

    root = data_root(request.config.getoption("--data-dir"))
    if not all((root / "MNIST" / "raw" / name).is_file() for name in SHA256):
        pytest.skip(f"MNIST is not under {root}/MNIST/raw: pass --data-dir or set $ABLATION_DATA")
    return root


@pytest.fixture(scope="session")
def mnist(data_dir):
    from ablation.engine.data import load_mnist

    return load_mnist(data_dir)


@pytest.fixture(scope="session")
def runs_dir(request) -> Path:
    return Path(request.config.getoption("--runs-dir"))


@pytest.fixture(scope="session")
def ray_local():
    """The session's Ray: a cluster of two nodes on this machine, one CPU each, joined by address as a command
    joins one (a task lands on either node). Started once, for the tests of every module that use it (marked
    xdist_group("ray"), so they share one worker): a Ray takes seconds to start, longer on a busy machine."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, logging_level="WARNING")
        yield ray
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(autouse=True)
def prevent_leaking_rng():
    """Restore the global torch and Python RNG state after each test (torchvision's pattern)."""
    import random

    torch_state, py_state = torch.get_rng_state(), random.getstate()
    yield
    torch.set_rng_state(torch_state)
    random.setstate(py_state)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Under -n, fail the xdist_group tests at once when pytest-xdist's loadgroup has not grouped them.

    xdist groups a step's tests by suffixing `@<group>` to their node ids on the workers (in this same hook,
    hence trylast here). pytest 9.2 ignores that write (pytest-dev/pytest-xdist#1386), and the tests are
    then dealt out one by one: two workers train the same run, and a step's every-seed check can run before
    its seeds have trained. The test extra pins pytest below 9.2; this tells anyone whose pytest is newer,
    before any training, instead of silently doubling the work. (An error raised here would crash the
    worker and lose the message, so the tests themselves fail, in pytest_runtest_setup.)"""
    if hasattr(config, "workerinput") and config.getvalue("loadgroup"):
        config.ungrouped = {item.nodeid for item in items
                            if any(item.iter_markers("xdist_group")) and "@" not in item.nodeid}


def pytest_runtest_setup(item):
    if item.nodeid in getattr(item.config, "ungrouped", ()):
        from importlib.metadata import version

        pytest.fail(f"pytest {version('pytest')} with pytest-xdist {version('pytest-xdist')} does not group tests "
                    "marked xdist_group (pytest-dev/pytest-xdist#1386), so a step's runs would train on several "
                    "workers: install the test extra (pip install -e '.[test]', which pins pytest<9.2) or run "
                    "without -n", pytrace=False)


def pytest_collection_finish(session):
    """--backend ray: submit every run the selected slow tests need, now, so they all train at once; --address is
    checked first, in one line (malformed, nothing answering, a token Ray refuses). --collect-only submits nothing."""
    config = session.config
    if hasattr(config, "workerinput"):
        return
    if config.getoption("--backend") != "ray":
        if not config.getoption("collectonly"):  # under -n the controller collects nothing: the hook above says it
            announce(config, runs_to_train(slow_cases(session.items), config))
        return
    if config.getoption("numprocesses", None):
        raise pytest.UsageError("--backend ray trains on Ray and keeps the verdicts here: run it without -n")
    from ablation.runs import ray_backend

    address = config.getoption("--address")
    if address is not None:
        try:
            ray_backend.parse_address(address)
        except ValueError as e:
            raise pytest.UsageError(f"--address: {e}") from None
    if config.getoption("collectonly"):
        return
    if runs := runs_to_train(slow_cases(session.items), config):
        try:
            ray_backend.import_ray()
            ray_backend.check_address(address)
        except (ray_backend.RayMissing, ray_backend.RayUnreachable) as e:
            raise pytest.UsageError(str(e)) from None
        announce(config, runs)
        config.ray_runs = {(one.name, t.seeds[0]): ref for ref, t in ray_backend.submit(runs, None, address=address).items()
                           for one in (t.step, *t.views)}


def pytest_terminal_summary(terminalreporter, config):
    """After slow tests, the reproduction table: the fresh runs of this session against the committed study."""
    if hasattr(config, "workerinput") or not getattr(pytest_runtest_logreport, "slow_ran", False):
        return
    from ablation.runs.reproduce import reproduction

    if found := reproduction(Path(config.getoption("--runs-dir")), selected_runs(config)):
        title, text = found
        terminalreporter.write_sep("-", title)
        terminalreporter.write_line(text)


def pytest_runtest_logreport(report):
    # Seen on the controller for every worker's result too, so the report is rendered once, there.
    if report.when == "call" and "slow" in report.keywords:
        pytest_runtest_logreport.slow_ran = True


def pytest_sessionfinish(session, exitstatus):
    """After a session that ran slow tests, render the report from all records (controller only)."""
    if hasattr(session.config, "workerinput") or not getattr(pytest_runtest_logreport, "slow_ran", False):
        return
    from ablation.report import render_files, report_path

    runs = Path(session.config.getoption("--runs-dir"))
    if not any(runs.glob("*/seed-*.json")):  # every record came from the committed study (--reuse-records)
        return
    for path in render_files(runs, report_path(runs)):
        print(f"\nrendered {path}")

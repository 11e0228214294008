"""Test-wide set-up: Hypothesis profiles, options, the data root, and a guard that no test leaks RNG state."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# dev: quick local iterations; ci: more examples, no deadline (a shared 2-core runner has hiccups).
settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile("ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Every test process uses the engine's thread count, so results agree between plain and -n runs.
torch.set_num_threads(int(os.environ.get("ABLATION_THREADS", 1)))


def pytest_addoption(parser):
    parser.addoption("--data-dir", default=None, help="folder holding MNIST/raw (default: $ABLATION_DATA, else ./data)")
    group = parser.getgroup("ablation slow tier")
    group.addoption("--steps", default=None, help="comma-separated steps to train, 'final' for the step the mission is judged on (default: all)")
    group.addoption("--seeds", default=None, help="seeds, e.g. 0-4 or 0,2 (default: each step's own)")
    group.addoption("--runs-dir", default="reports/runs", help="where records are written and read")
    group.addoption("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="training device")
    group.addoption("--reuse-records", action="store_true",
                    help="check an existing record of the same config and engine source instead of training")


@pytest.fixture(scope="session")
def data_dir(request) -> Path:
    from ablation.data import SHA256, data_root

    root = data_root(request.config.getoption("--data-dir"))
    if not all((root / "MNIST" / "raw" / name).is_file() for name in SHA256):
        pytest.skip(f"MNIST is not under {root}/MNIST/raw: pass --data-dir or set $ABLATION_DATA")
    return root


@pytest.fixture(scope="session")
def mnist(data_dir):
    from ablation.data import load_mnist

    return load_mnist(data_dir)


@pytest.fixture(scope="session")
def runs_dir(request) -> Path:
    return Path(request.config.getoption("--runs-dir"))


@pytest.fixture(autouse=True)
def prevent_leaking_rng():
    """Restore the global torch and Python RNG state after each test (torchvision's pattern)."""
    import random

    torch_state, py_state = torch.get_rng_state(), random.getstate()
    yield
    torch.set_rng_state(torch_state)
    random.setstate(py_state)


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
    for path in render_files(runs, report_path(runs)):
        print(f"\nrendered {path}")

"""The slow tier: train every step for every seed in full, save the record, assert the step's goals.

    pytest -m slow -n auto                          # everything (hours on a 2-core CPU)
    pytest -m slow --steps final --seeds 0          # one full run of the last step (what CI does)
    pytest -m slow --reuse-records                  # check the committed records without training

Per run (`test_run[<step>-seed<k>]`): the record is written, the run did not diverge, the parameter
and epoch budgets hold, and the accuracy floor holds in each of the last N epochs; a seed our runs
showed missing the floor is a strict xfail (the step's `floor_misses`) of analysis.GoalMiss only: a crash,
a divergence or a run of another length still fails.

Per step (`test_every_seed[<step>]`, when all the step's seeds are selected): the goals hold on every
seed, and the mean final accuracy where a goal sets one. A step whose goals our runs showed are not
met carries the reason (`known_miss`) as a strict xfail of analysis.GoalMiss: if it ever starts passing,
the test says so, and a missing record, an error, or seeds missing the floor other than its `floor_misses`
fail it (analysis.check_goals).

Per run trained into another folder (`test_retrained_run_reproduces_the_committed_record`, e.g. CI's
`--runs-dir build/ci-runs`): the fresh record's history and final weights equal the committed record's
bit for bit, when both were made under the same engine generation, libraries, device and thread count.

Per record (`test_saved_weights_measure_the_recorded_final_accuracy`): the public model of the record's
config, loaded with its saved weights and evaluated by today's code, gets the same test images right and
the same test loss as the record's last epoch. This checks today's evaluation (test-time views included)
on records an earlier engine made, which no retrain does.
"""
from __future__ import annotations

import pytest
import torch

from ablation import records
from ablation.analysis import GoalMiss, check_goals, check_run_goals
from ablation.steps import changed_run_fields
from ablation.train import train

pytestmark = pytest.mark.slow


def selected_steps(config) -> list:
    from ablation.__main__ import parse_steps

    return parse_steps(config.getoption("--steps") or "all")


def selected_seeds(config, step) -> list[int]:
    from ablation.__main__ import parse_seeds

    text = config.getoption("--seeds")
    return parse_seeds(text) if text else list(step.seeds)


def pytest_generate_tests(metafunc):
    config = metafunc.config
    if "run_case" in metafunc.fixturenames:
        cases = []
        for step in selected_steps(config):
            for seed in selected_seeds(config, step):
                marks = [pytest.mark.xdist_group(step.name)]
                if seed in step.floor_misses:
                    marks.append(pytest.mark.xfail(strict=True, raises=GoalMiss, reason=f"measured: {step.name} seed {seed} misses "
                                                   f"≥ {step.goals.accuracy_floor} % in the last {step.goals.last_epochs} epochs"))
                cases.append(pytest.param((step, seed), id=f"{step.name}-seed{seed}", marks=marks))
        metafunc.parametrize("run_case", cases)
    if "repro_case" in metafunc.fixturenames:  # the same runs, without the floor's xfails
        metafunc.parametrize("repro_case", [pytest.param((step, seed), id=f"{step.name}-seed{seed}",
                                                         marks=[pytest.mark.xdist_group(step.name)])
                                            for step in selected_steps(config) for seed in selected_seeds(config, step)])
    if "step_case" in metafunc.fixturenames:
        cases = []
        for step in selected_steps(config):
            marks = [pytest.mark.xdist_group(step.name)]
            if step.known_miss:
                marks.append(pytest.mark.xfail(strict=True, raises=GoalMiss, reason=step.known_miss))
            cases.append(pytest.param(step, id=step.name, marks=marks))
        metafunc.parametrize("step_case", cases)


# Records this process obtained, so that the tests of one run share one training whatever order they
# run in (xdist keeps a step's tests on one worker, but not in file order).
_OBTAINED: dict[tuple, dict] = {}


def obtain_record(step, seed: int, runs_dir, config) -> dict:
    """The run's record: a reusable one (--reuse-records), one trained earlier in this process, or trained now."""
    key = (step.name, seed, str(runs_dir))
    if key not in _OBTAINED:
        json_path, _ = records.record_paths(runs_dir, step.name, seed)
        record = records.reusable(json_path, step) if config.getoption("--reuse-records") else None
        if record is None:
            result = train(step, seed, device=config.getoption("--device"), data_dir=config.getoption("--data-dir"))
            record = records.load(records.save(result, runs_dir))
        _OBTAINED[key] = record
    return _OBTAINED[key]


def test_run(run_case, runs_dir, request):
    step, seed = run_case
    check_run_goals(step, obtain_record(step, seed, runs_dir, request.config))


def test_every_seed(step_case, runs_dir, request):
    step = step_case
    seeds = selected_seeds(request.config, step)
    if not set(step.seeds) <= set(seeds):
        # "On every seed" is a claim about all of a step's seeds, and the mean goal is over all of them.
        pytest.skip(f"the every-seed verdict needs all of {step.name}'s seeds {list(step.seeds)}; selected {seeds}")
    recs = []
    for seed in seeds:
        path, _ = records.record_paths(runs_dir, step.name, seed)
        if not path.exists():
            pytest.fail(f"no record for {step.name} seed {seed}: run test_run[{step.name}-seed{seed}] first")
        recs.append(records.load(path))
    check_goals(step, recs)


# What has to agree for a run to be promised bit-identical to another: the engine generation, the
# libraries, the device and its model, the thread count and the pass layout (tests/test_train.py
# shows the promise on quick runs; this checks it on a full one).
SAME_MACHINE_KEYS = ("torch", "torchvision", "device", "device_name", "threads", "seeds_per_pass",
                     "train_images", "eval_images")


def test_retrained_run_reproduces_the_committed_record(repro_case, runs_dir, request):
    """A run trained here into another folder (--runs-dir, as CI does) against the committed record of the
    same step and seed: the same history, epoch by epoch, and the same final weights, bit for bit."""
    step, seed = repro_case
    if runs_dir.resolve() == records.DEFAULT_RUNS.resolve():
        pytest.skip("these are the committed records themselves; train into another --runs-dir to compare")
    committed_path, committed_weights = records.record_paths(records.DEFAULT_RUNS, step.name, seed)
    if not committed_path.exists():
        pytest.skip(f"no committed record of {step.name} seed {seed} to compare with")
    committed = records.load(committed_path)
    if changed_run_fields(step, committed["config"]):
        pytest.skip(f"the committed record of {step.name} seed {seed} was made with another config")
    fresh = obtain_record(step, seed, runs_dir, request.config)
    _, fresh_weights = records.record_paths(runs_dir, step.name, seed)
    differ = [k for k in SAME_MACHINE_KEYS if fresh["provenance"].get(k) != committed["provenance"].get(k)]
    if records.record_generation(committed) != records.GENERATION:
        differ.insert(0, "engine generation")
    if differ:
        pytest.skip(f"made with another {', '.join(differ)}: bit-identity is promised only on the same set-up")
    assert records.without_timings(fresh["history"]) == records.without_timings(committed["history"])
    assert fresh["diverged_at"] == committed["diverged_at"]
    ours, theirs = records.load_weights(fresh_weights), records.load_weights(committed_weights)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), "final weights differ"


def test_saved_weights_measure_the_recorded_final_accuracy(repro_case, runs_dir, mnist, request):
    """What a record says its network scores in the last epoch is what its saved weights score now: the same
    number of test images right and the same mean test loss, through `models.for_config` and `evaluate`
    (records.measure_weights)."""
    step, seed = repro_case
    record = obtain_record(step, seed, runs_dir, request.config)
    if why := records.why_not_remeasurable(record):
        pytest.skip(why)
    _, weights = records.record_paths(runs_dir, step.name, seed)
    correct, loss = records.measure_weights(record, weights, mnist.test_images, mnist.test_labels)
    last, n = record["history"][-1], len(mnist.test_labels)
    assert correct == round(last["test_acc"] * n / 100), f"{correct} of {n} right, record says {last['test_acc']} %"
    # Records are rounded to 6 decimals (those made before that, not): equal within the rounding.
    assert abs(loss - last["test_loss"]) <= 5.0001e-7, f"test loss {loss} against {last['test_loss']}"

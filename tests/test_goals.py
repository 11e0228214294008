"""The slow tier: train every step for every seed in full, save the record, assert the step's goals.

    pytest -m slow -n auto                          # everything (hours on a 2-core CPU), into build/runs
    pytest -m slow --backend ray [--address auto]   # the same, every run a Ray task (no -n)
    pytest -m slow --steps final --seeds 0          # one full run of the last step (what CI does)
    pytest -m slow --reuse-records                  # check the committed records without training

Fresh runs go to --runs-dir (default build/runs); the committed study (reports/runs) changes only when
named there. At the start, a line says how many runs will train and about how long they will take; at the
end, a reproduction table sets each fresh run against the committed one. A step that differs from its parent
only in how it evaluates (18-shifted-views) is evaluated on the parent's training when both are selected:
one training, a record each, as `python -m ablation run` does.

Per run (`test_run[<step>-seed<k>]`): the record is written, the run did not diverge, the parameter
and epoch budgets hold, and the accuracy floor holds in each of the last N epochs; a seed our runs
showed missing the floor is a strict xfail (the step's `floor_misses`) of analysis.GoalMiss only: a crash,
a divergence or a run of another length still fails.

Per step (`test_every_seed[<step>]`, when all the step's seeds are selected): the goals hold on every
seed, and the mean final accuracy where a goal sets one. A step whose goals our runs showed are not
met carries the reason (`known_miss`) as a strict xfail of analysis.GoalMiss: if it ever starts passing,
the test says so, and a missing record, an error, or seeds missing the floor other than its `floor_misses`
fail it (analysis.check_goals).

Per fresh run (`test_retrained_run_reproduces_the_committed_record`): its history and final weights equal
the committed record's bit for bit, when both were made on the same set-up (engine, libraries, device and
its model, thread count, pass layout); a difference there is a defect and fails.

Per confirmation seed (`test_confirmation_seed[<step>-seed<k>]`, for the steps that name them): the
per-run goals, on seeds fixed before they ran and never judged with the step's own; a measured miss is a
strict xfail (the step's `confirmation_misses`).

Per record (`test_saved_weights_measure_the_recorded_final_accuracy`): the public model of the record's
config, loaded with its saved weights and evaluated by today's code, gets the same test images right and
the same test loss as the record's last epoch. This checks today's evaluation (test-time views included)
on records an earlier engine made, which no retrain does.
"""
from __future__ import annotations

import pytest

from ablation.runs import machine, records

from ablation.runs import reproduce
from ablation.study.analysis import GoalMiss, check_goals, check_run_goals
from ablation.study.step import changed_run_fields
from conftest import (reusable_record, selected_confirmation_seeds, selected_seeds, selected_steps, task_for,
                      xdist_group)

pytestmark = pytest.mark.slow


def seed_cases(step, seeds: list[int], misses: tuple[int, ...], what: str, config) -> list:
    """One case per seed; a seed our runs showed missing the floor is a strict xfail of GoalMiss."""
    cases = []
    for seed in seeds:
        marks = [pytest.mark.xdist_group(xdist_group(step, seed, config))]
        if seed in misses:
            marks.append(pytest.mark.xfail(strict=True, raises=GoalMiss, reason=f"measured: {step.name} {what} {seed} "
                                           f"misses ≥ {step.goals.accuracy_floor} % in the last {step.goals.last_epochs} epochs"))
        cases.append(pytest.param((step, seed), id=f"{step.name}-seed{seed}", marks=marks))
    return cases


def pytest_generate_tests(metafunc):
    config = metafunc.config
    if "run_case" in metafunc.fixturenames:
        metafunc.parametrize("run_case", [case for step in selected_steps(config) for case in
                                          seed_cases(step, selected_seeds(config, step), step.floor_misses, "seed", config)])
    if "repro_case" in metafunc.fixturenames:  # the same runs, without the floor's xfails
        metafunc.parametrize("repro_case", [pytest.param((step, seed), id=f"{step.name}-seed{seed}",
                                                         marks=[pytest.mark.xdist_group(xdist_group(step, seed, config))])
                                            for step in selected_steps(config) for seed in selected_seeds(config, step)])
    if "confirmation_case" in metafunc.fixturenames:
        metafunc.parametrize("confirmation_case", [
            case for step in selected_steps(config) for case in
            seed_cases(step, selected_confirmation_seeds(config, step), step.confirmation_misses, "confirmation seed",
                       config)])
    if "step_case" in metafunc.fixturenames:
        cases = []
        for step in selected_steps(config):  # with its judged seeds' runs, whose records it reads
            marks = [pytest.mark.xdist_group(xdist_group(step, (selected_seeds(config, step) or [step.seeds[0]])[0], config))]
            if step.known_miss:
                marks.append(pytest.mark.xfail(strict=True, raises=GoalMiss, reason=step.known_miss))
            cases.append(pytest.param(step, id=step.name, marks=marks))
        metafunc.parametrize("step_case", cases)


# Records this process obtained, so that the tests of one run share one training whatever order they
# run in (xdist keeps a step's tests on one worker, but not in file order): {key: (record, weights path)}.
_OBTAINED: dict[tuple, tuple[dict, object]] = {}


def obtain(step, seed: int, config) -> tuple[dict, object]:
    """The run's record and weights: reusable ones (--reuse-records), the run trained on Ray (--backend ray,
    submitted when the session started), one trained earlier in this process, or trained now."""
    runs_dir = config.getoption("--runs-dir")
    key = (step.name, seed, str(runs_dir))
    if key not in _OBTAINED:
        found = reusable_record(step, seed, config)
        if found is None:
            from ablation.runs import runner

            if (ref := getattr(config, "ray_runs", {}).get((step.name, seed))) is not None:
                from ablation.runs import ray_backend

                encoded, _ = ray_backend.result(ref)
            else:
                encoded = runner.train_task(task_for(step, seed, config), bar=False)
            # the run, or the training it rides on and every step evaluated there: a record each
            for record, weights in encoded:
                json_path = records.write(record, weights, runs_dir)
                _OBTAINED[record["step"], seed, str(runs_dir)] = (records.load(json_path),
                                                                  records.record_paths(runs_dir, record["step"], seed)[1])
        else:
            _OBTAINED[key] = found
    return _OBTAINED[key]


def recorded(step, seed: int, config) -> dict:
    """The record test_run obtained for this run (in this process, or written to --runs-dir), without training."""
    if (step.name, seed, str(config.getoption("--runs-dir"))) in _OBTAINED:
        return obtain(step, seed, config)[0]
    if found := reusable_record(step, seed, config):
        return found[0]
    path, _ = records.record_paths(config.getoption("--runs-dir"), step.name, seed)
    if not path.exists():
        pytest.fail(f"no record for {step.name} seed {seed}: run test_run[{step.name}-seed{seed}] first")
    return records.load(path)


def test_run(run_case, request):
    step, seed = run_case
    check_run_goals(step, obtain(step, seed, request.config)[0])


def test_confirmation_seed(confirmation_case, request):
    """A confirmation seed (Step.confirmation_seeds: fresh, fixed before they ran, reported apart from the judged
    seeds) holds the step's per-run goals; a measured miss is a strict xfail (Step.confirmation_misses).
    --reuse-records checks the committed ones in reports/confirmation."""
    step, seed = confirmation_case
    check_run_goals(step, obtain(step, seed, request.config)[0])


def test_every_seed(step_case, request):
    step = step_case
    seeds = selected_seeds(request.config, step)
    if not set(step.seeds) <= set(seeds):
        # "On every seed" is a claim about all of a step's seeds, and the mean goal is over all of them.
        pytest.skip(f"the every-seed verdict needs all of {step.name}'s seeds {list(step.seeds)}; selected {seeds}")
    check_goals(step, [recorded(step, seed, request.config) for seed in seeds])


def test_retrained_run_reproduces_the_committed_record(repro_case, request):
    """A fresh run (trained into --runs-dir, build/runs by default, as CI's build/ci-runs) against the committed
    record of the same step and seed: where the set-up is the same (engine, libraries, device and its model,
    threads, pass layout), the same history, epoch by epoch, and the same final weights, bit for bit. On another
    set-up the fresh run is another sample of the step's distribution: the goals judge it (test_run), and the
    reproduction table printed at the end sets it against the committed seeds."""
    step, seed = repro_case
    committed_path, committed_weights = records.record_paths(records.DEFAULT_RUNS, step.name, seed)
    if not committed_path.exists():
        pytest.skip(f"no committed record of {step.name} seed {seed} to compare with")
    committed = records.load(committed_path)
    if changed_run_fields(step, committed["config"]):
        pytest.skip(f"the committed record of {step.name} seed {seed} was made with another config")
    fresh, fresh_weights = obtain(step, seed, request.config)
    if fresh_weights.resolve() == committed_weights.resolve():
        pytest.skip("the committed record itself (--reuse-records, or --runs-dir reports/runs): nothing fresh to compare")
    if differ := reproduce.setup_differences(fresh, committed):
        pytest.skip(f"made with another {', '.join(differ)}: bit-identity is promised only on the same set-up")
    assert records.without_timings(fresh["history"]) == records.without_timings(committed["history"]), (
        f"{step.name} seed {seed}: {reproduce.DIFFERENT}: the histories differ")
    assert fresh["diverged_at"] == committed["diverged_at"]
    assert reproduce.identical(fresh, committed, fresh_weights, committed_weights), (
        f"{step.name} seed {seed}: {reproduce.DIFFERENT}: the final weights differ")


def test_saved_weights_measure_the_recorded_final_accuracy(repro_case, mnist, request):
    """What a record says its network scores in the last epoch is what its saved weights score now: the same
    number of test images right and the same mean test loss, through `models.for_config` and `evaluate`
    (records.measure_weights)."""
    step, seed = repro_case
    record, weights = obtain(step, seed, request.config)
    if why := records.why_not_remeasurable(record):
        pytest.skip(why)
    if differ := machine.float_path_differences(record):
        pytest.skip(f"made with another {', '.join(differ)}: exact agreement is promised on the same float path only")
    correct, loss = records.measure_weights(record, weights, mnist.test_images, mnist.test_labels)
    last, n = record["history"][-1], len(mnist.test_labels)
    assert correct == round(last["test_acc"] * n / 100), f"{correct} of {n} right, record says {last['test_acc']} %"
    # Records are rounded to 6 decimals (those made before that, not): equal within the rounding.
    assert abs(loss - last["test_loss"]) <= 5.0001e-7, f"test loss {loss} against {last['test_loss']}"

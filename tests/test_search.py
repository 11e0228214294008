"""The recipe search (`python -m ablation search`): a space is data and a trial a registry variant; a trial over the
parameter budget never trains; the test set is never read; the objective and the pruner see the held-out accuracy
over the search seeds; every trained trial is a record; a search resumes, re-queues what was cut short, reuses
records; in this process, in a pool of two and on Ray; its errors are one line; the report shows it.
The engine is faked (a history made up per call) except where a test says it trains, on a tiny synthetic set."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ablation.cli import main
from ablation.engine import RunResult
from ablation.engine.data import MNIST, TRAIN_LABEL_COUNTS, evaluation_label
from ablation.report import render_html, render_markdown
from ablation.report.search import screen_of, searches_view
from ablation.runs import journal, records
from ablation.runs import search as searching
from ablation.study.registry import SEEDS, STEPS, CONFIRMATION_SEEDS, with_overrides
from ablation.study.spaces import (SEARCH_SEEDS, SPACES, Dimension, Space, assignments, objective, registered_values,
                                   space_for, suggest)

pytestmark = pytest.mark.fast
optuna = pytest.importorskip("optuna")

STEP = STEPS["13-wide-end-6k"]
ROOT = Path(__file__).resolve().parents[1]


def synthetic(n: int = 1500) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g), torch.arange(n) % 10


class NoTestSet:
    """A data set whose test tensors raise on any access: what a search must never read."""

    def __init__(self, images, labels):
        self.train_images, self.train_labels = images, labels

    @property
    def test_images(self):
        raise AssertionError("the search read the test images")

    @property
    def test_labels(self):
        raise AssertionError("the search read the test labels")


def fake_engine(top_of_call=lambda call: 99.0):
    """A train_many that trains nothing: each seed's held-out accuracy rises to top_of_call(n) for the n-th call, and
    on_epoch is called per epoch and seed as the engine calls it (an exception from it stops the 'training')."""
    calls = []

    def train_many(step, seeds, *, on_epoch=None, epochs=None, holdout=0, fold=0, **_):
        calls.append(step.name)
        top = top_of_call(len(calls))
        n = epochs or step.epochs
        made = [RunResult(step, s, 0, evaluated_on=evaluation_label(holdout, fold), started=1.0e9, finished=1.0e9 + 1,
                          state_dict={}, engine={"device": "cpu", "threads": 1, "seeds_per_pass": len(seeds),
                                                 "train_images": sum(TRAIN_LABEL_COUNTS) - holdout,
                                                 "eval_images": holdout}) for s in seeds]
        for e in range(1, n + 1):
            for r in made:
                row = {"epoch": e, "train_loss": 0.1, "train_acc": 99.0, "test_loss": 0.1, "lr": 0.1, "seconds": 1.0,
                       "test_acc": round(top - 0.01 * (n - e) - 0.001 * (r.seed - 200), 6)}
                r.history.append(row)
                if on_epoch:
                    on_epoch(r.seed, e, row)
        return made

    return train_many, calls


@pytest.fixture
def engine(monkeypatch):
    train_many, calls = fake_engine()
    monkeypatch.setattr(sys.modules["ablation.engine.train"], "train_many", train_many)
    return calls


def a_search(tmp_path, space: str = "lr", **changes) -> searching.Search:
    return searching.Search(STEP, SPACES[space], tmp_path / "search", **{"max_params": 6_000, **changes})


def trials(folder: Path) -> list[dict]:
    return journal.rows(journal.load(folder))


DATA = MNIST(*synthetic(), *synthetic(10))


# --- the space is data -------------------------------------------------------------------------------------------

def test_the_search_seeds_are_used_nowhere_else_in_the_study():
    used = set(SEEDS) | set(CONFIRMATION_SEEDS) | {s for step in STEPS.values() for s in step.seeds + step.confirmation_seeds}
    assert not used & set(SEARCH_SEEDS)


@pytest.mark.parametrize("space", [pytest.param(s, id=s.name) for s in SPACES.values()])
def test_every_space_fits_the_steps_it_is_declared_for(space):
    for name in space.steps:
        assert space_for(STEPS[name]) is space


def test_a_trials_values_are_a_registry_variant_named_by_them():
    values = {"lr": 0.051234, "schedule.final_epoch": 12, "layout[5]": 10, "ema": 0.995}
    overrides, shown = assignments(STEP, values)
    assert shown == ["lr=0.0512", "schedule.final_epoch=12", "layout[5]=10", "ema=0.995"]
    variant = with_overrides(STEP, overrides)
    assert (variant.lr, variant.schedule.final_epoch, variant.ema) == (0.0512, 12, 0.995)
    assert variant.layout == STEP.layout[:5] + ("conv3:10",) + STEP.layout[6:]
    assert variant.name.startswith("13-wide-end-6k[lr=0.0512,") and variant.name != STEP.name


def test_a_space_that_names_no_field_or_no_convolution_is_refused():
    with pytest.raises(ValueError, match="not a field"):
        Space("x", "", (Dimension("nope", "int", 1, 2),)).check(STEP)
    with pytest.raises(ValueError, match="not a convolution"):
        Space("x", "", (Dimension("layout[3]", "choice", choices=(8, 10)),)).check(STEP)  # token 3 is the pool


def test_the_objective_is_the_worst_seeds_lowest_of_its_last_five_epochs():
    rows = lambda accs: [{"test_acc": a} for a in accs]
    assert objective([rows([90, 99.5, 99.4, 99.6, 99.5, 99.7]), rows([99.0, 99.45, 99.5, 99.5, 99.5, 99.5])]) == 99.4
    assert objective([rows([99.5] * 6), rows([99.5] * 6)], diverged=True) == 0.0


# --- the budget, the test set, the objective and the pruner -----------------------------------------------------

def test_a_trial_over_the_parameter_budget_is_refused_and_never_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules["ablation.engine.train"], "train_many",
                        lambda *a, **k: pytest.fail("a trial over the budget trained"))
    monkeypatch.setattr(searching, "MAX_REFUSALS", 3)
    s = a_search(tmp_path, max_params=STEP.params - 1)  # the lr space keeps the step's 5,984 parameters: all over
    assert searching.search(s, 1, data=DATA) == 0
    found = trials(s.out)
    assert [r["outcome"] for r in found] == ["over budget"] * 3
    assert all(r["params"] == STEP.params for r in found)
    assert journal.load(s.out).trials[0].user_attrs["over_budget"] == STEP.params
    assert sorted(p.name for p in s.out.iterdir()) == ["journal.log"]  # no record


def test_the_test_set_is_never_read_by_a_search_that_trains_to_the_end(tmp_path, monkeypatch, capsys):
    """The real engine, two epochs of two seeds on 1,000 synthetic images, scored on 500 held out of them."""
    monkeypatch.setattr(searching, "load_mnist_checked", lambda data_dir=None: NoTestSet(*synthetic()))
    out = tmp_path / "search"
    assert main(["search", STEP.name, "--space", "lr", "--trials", "2", "--holdout", "500", "--quick",
                 "--out", str(out), "--device", "cpu"]) == 0
    found = trials(out)
    assert [r["outcome"] for r in found] == ["complete", "complete"]
    runs = records.load_all(out)
    assert len(runs) == 2 and all(r["evaluated_on"] == "validation (500 held out of train)" and r["params"] == STEP.params
                                  for rs in runs.values() for r in rs)
    for r in found:  # the told value is the records' objective
        assert r["value"] == objective([x["history"] for x in runs[r["variant"]]])
    assert "[2/2] trial 1: " in capsys.readouterr().err


def test_the_pruner_is_told_the_lowest_seed_each_epoch_and_stops_a_hopeless_trial(tmp_path, monkeypatch, capsys):
    train_many, calls = fake_engine(lambda call: 99.5 if call == 1 else 95.0)
    monkeypatch.setattr(sys.modules["ablation.engine.train"], "train_many", train_many)
    monkeypatch.setattr(searching, "PRUNE_STARTUP", 1)
    monkeypatch.setattr(searching, "PRUNE_AFTER", 3)
    s = a_search(tmp_path)
    assert searching.search(s, 2, data=DATA) == 0
    first, second = journal.load(s.out).trials
    assert first.value == pytest.approx(99.5 - 0.01 * 4 - 0.001)  # seed 201's epoch 11, the lowest of the last five
    assert first.intermediate_values[15] == pytest.approx(99.5 - 0.001)  # per epoch: the lower seed's
    assert second.state.name == "PRUNED" and second.user_attrs["pruned_at"] == 3 and max(second.intermediate_values) == 3
    assert list(records.load_all(s.out)) == [first.user_attrs["variant"]]  # a pruned trial writes no record
    assert "pruned at epoch 3" in capsys.readouterr().err


# --- resume, Ctrl-C, reuse ------------------------------------------------------------------------------------

def test_the_same_command_again_continues_to_the_total_and_refuses_another_search_in_the_folder(tmp_path, engine):
    s = a_search(tmp_path)
    seeds = lambda: journal.load(s.out).user_attrs[searching.NEXT_SEED]  # each command's block of sampler seeds
    assert searching.search(s, 2, data=DATA) == 0 and len(engine) == 2 and seeds() == searching.SAMPLER_SEED + 2
    assert searching.search(s, 3, data=DATA) == 0 and len(engine) == 3  # one more, not three
    assert seeds() == searching.SAMPLER_SEED + 3  # the next block starts after the seeds used, whatever the trials
    assert searching.search(s, 3, data=DATA) == 0 and len(engine) == 3
    with pytest.raises(ValueError, match="holds another search .*max_params 6000 there, 7000 here"):
        searching.search(a_search(tmp_path, max_params=7_000), 3, data=DATA)


def test_a_trial_left_running_by_a_killed_process_is_failed_and_queued_again(tmp_path, engine, capsys):
    s = a_search(tmp_path)
    study = searching.open_study(s, create=True)
    killed = study.ask()
    lr = killed.suggest_float("lr", 0.05, 0.5, log=True)  # then the process died: never told
    assert searching.search(s, 1, data=DATA) == 0
    found = journal.load(s.out).trials
    assert [t.state.name for t in found] == ["FAIL", "COMPLETE", "WAITING"]  # the step's own recipe queued next
    assert found[1].params == {"lr": lr} and found[1].user_attrs["requeued_from"] == 0
    assert [r["outcome"] for r in trials(s.out)] == ["interrupted", "complete", "waiting"]
    assert "1 more left running or queued: the same command continues the search." in \
        render_html({}, searches=searches_view(s.out.parent))
    assert "trial 0 was left running by an earlier command: failed and queued again" in capsys.readouterr().err


def test_ctrl_c_stops_queues_the_trial_cut_short_and_says_how_to_continue(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["ablation.engine.train"], "train_many", interrupted)
    s = a_search(tmp_path)
    assert searching.search(s, 2, data=DATA) == 130
    assert f"interrupted: 0 of 2 trials done in {s.out}; run the same command again to continue" in capsys.readouterr().err
    cut, queued = journal.load(s.out).trials
    assert cut.state.name == "FAIL" and queued.state.name == "WAITING"
    monkeypatch.setattr(sys.modules["ablation.engine.train"], "train_many", fake_engine()[0])
    assert searching.search(s, 2, data=DATA) == 0  # the same command again: the trial cut short runs first
    again = journal.load(s.out).trials[1]
    assert again.state.name == "COMPLETE" and again.params == cut.params


def test_a_trial_whose_records_exist_is_scored_from_them_not_trained_again(tmp_path, engine, capsys):
    s = a_search(tmp_path)
    assert searching.search(s, 1, data=DATA) == 0 and len(engine) == 1
    first = journal.load(s.out).trials[0]
    journal.load(s.out).enqueue_trial(first.params)  # the same values drawn again
    assert searching.search(s, 2, data=DATA) == 0 and len(engine) == 1
    again = journal.load(s.out).trials[1]
    assert again.user_attrs["reused"] and again.value == first.value
    assert "(from its records)" in capsys.readouterr().err


# --- the backends ---------------------------------------------------------------------------------------------

POOL_DRIVER = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_search import fake_engine, synthetic, NoTestSet
from ablation.engine import train
from ablation.runs import search
train.train_many = fake_engine()[0]  # in the driver and, as spawn imports this file again, in every worker
search.load_mnist_checked = lambda data_dir=None: NoTestSet(*synthetic())
if __name__ == "__main__":
    from ablation.cli import main
    sys.exit(main())
"""


def test_two_worker_processes_share_the_journal(tmp_path):
    driver, out = tmp_path / "driver.py", tmp_path / "search"
    driver.write_text(POOL_DRIVER.format(tests=str(ROOT / "tests")))
    done = subprocess.run([sys.executable, str(driver), "search", STEP.name, "--space", "lr", "--trials", "3", "--jobs",
                           "2", "--holdout", "500", "--out", str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # this checkout's package, in every worker
    assert done.returncode == 0, done.stderr
    found = trials(out)
    assert [r["outcome"] for r in found] == ["complete"] * 3 and len({tuple(r["set"]) for r in found}) == 3
    assert sorted(records.load_all(out)) == sorted(r["variant"] for r in found)
    assert "[3/3]" in done.stderr


@pytest.mark.xdist_group("ray")
def test_on_a_local_ray_each_trial_is_a_task_against_the_shared_journal(ray_local, tmp_path):
    # the real engine in the workers (the session's two-node Ray): two epochs on 1,000 synthetic images, no test set
    s = a_search(tmp_path, holdout=500, epochs=2, quick={"limit_train": 256, "limit_test": 200})
    assert searching.search(s, 2, backend="ray", data=searching.without_test_set(NoTestSet(*synthetic()))) == 0
    assert [r["outcome"] for r in trials(s.out)] == ["complete", "complete"]
    assert len(records.load_all(s.out)) == 2


# --- the command line and the report ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["search", "1-basic"], "no search space is declared for 1-basic: give --space"),
    (["search", STEP.name, "--space", "nope"], "argument --space: invalid choice: 'nope'"),
    (["search", "nope"], "unknown step 'nope'"),
    (["search", STEP.name, "--trials", "0"], "argument --trials: must be a positive integer"),
    (["search", STEP.name, "--holdout", "60000"], "--holdout size must be between 1 and 59999, got 60000"),
])
def test_a_bad_argument_is_one_line_and_exit_2(argv, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists()


def test_without_optuna_search_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    assert main(["search", STEP.name, "--out", str(tmp_path / "s")]) == 2
    assert "pip install -e '.[search]'" in capsys.readouterr().err


def test_optuna_is_imported_by_the_search_only():
    """Read from the source (no interpreter to start): optuna is imported inside a function of journal.py and
    nowhere else, so no module imports it when it loads, and only a search or its report section reach it."""
    import ast

    where = []
    for path in sorted((ROOT / "ablation").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "optuna" or n.startswith("optuna.") for n in names):
                where.append((path.relative_to(ROOT).as_posix(), "top" if id(node) in top else "in a function"))
    assert where and set(where) == {("ablation/runs/journal.py", "in a function")}, where


def test_the_report_shows_each_search_and_says_when_none_ran(tmp_path, engine):
    assert "No search was run (<code>python -m ablation search STEP</code>)" in render_html({})
    s = searching.Search(STEP, SPACES["lr"], tmp_path / "search" / STEP.name, max_params=6_000)
    assert searching.search(s, 3, data=DATA) == 0
    view = searches_view(tmp_path / "search")
    page = render_html({}, searches=view)
    assert "13-wide-end-6k, space lr" in page and "<b>3 trials trained</b>: 3 complete, 0 pruned, 0 failed" in page
    assert "lr: log-uniform 0.05–0.5" in page and page.count('<td class="n">98.96</td>') == 3  # 99 - 0.04 - 0.001
    assert render_html({}, searches=searches_view(tmp_path / "search")) == page  # deterministic
    # ablation.md: the same figures in Markdown
    assert "No search was run (`python -m ablation search STEP`)" in render_markdown({})
    md = render_markdown({}, searches=view)
    assert "### 13-wide-end-6k, space lr" in md and "**3 trials trained**: 3 complete, 0 pruned, 0 failed" in md
    assert md.count("| 98.96 |") == 3 and "(trial 0): **98.96 %**" in md


def test_the_report_without_optuna_says_it_cannot_show_the_searches(tmp_path, engine, monkeypatch):
    s = searching.Search(STEP, SPACES["lr"], tmp_path / "search" / STEP.name, max_params=6_000)
    assert searching.search(s, 1, data=DATA) == 0
    monkeypatch.setitem(sys.modules, "optuna", None)
    assert "1 search(es) under" in render_html({}, searches=searches_view(tmp_path / "search"))


def test_the_report_gives_each_best_trials_screen_verdict_or_the_command_that_screens_it(tmp_path, engine):
    from test_screen import held_out

    s = searching.Search(STEP, SPACES["lr"], tmp_path / "search" / STEP.name, max_params=6_000)
    assert searching.search(s, 3, data=DATA) == 0
    baseline, screened, not_screened = trials(s.out)  # the first trains the step's own recipe
    lr = screened["values"]["lr"]

    def run(name: str, fold: int, top: float, config: dict | None = None) -> dict:
        return held_out(name, 0, fold, top, config=config, base=STEP.name, epochs=15)

    # the trial's recipe screened on six folds, filed under a name that writes its --set otherwise than the search
    # (a screen pairs configs, not names), 0.1 % ahead on each; a decoy at another lr must not count
    folds = {k: {STEP.name: [run(STEP.name, k, 99.2)],
                 f"{STEP.name}[lr={lr:.6f}]": [run("x", k, 99.3, {"lr": float(f"{lr:.3g}")})],
                 f"{STEP.name}[lr=0.5]": [run("y", k, 98.0, {"lr": 0.5})]} for k in range(6)}
    best = {b["number"]: b for b in searches_view(tmp_path / "search", folds)["searches"][0]["best"]}
    assert best[screened["number"]]["verdict"] == "passes (6 (fold, seed) pairs, mean +0.10 %)"
    assert best[screened["number"]]["passed"] and not best[not_screened["number"]]["screened"]
    other_lr = float(f"{not_screened['values']['lr']:.3g}")  # what the trial trained: its draw to 3 digits
    assert best[not_screened["number"]]["command"] == f"python -m ablation screen {STEP.name} --set lr={other_lr!r}"
    page = render_html({}, searches=searches_view(tmp_path / "search", folds))
    assert "<b>passes (6 (fold, seed) pairs" in page and "not screened: <code" in page
    # the command sets only what differs from the step, a layout in double quotes, as a shell reads it back
    widths = {"layout[4]": 8, "layout[5]": 12, "layout[6]": 14, "layout[7]": 12}  # the step's but one (14 -> 12)
    command = screen_of(STEP.name, {**registered_values(STEP, SPACES["6k"]), **widths, "lr": 0.1}, {})["command"]
    layout = ("conv3:8", "conv3:10", "conv1:8", "pool", "conv3:8", "conv3:12", "conv3:14", "conv3p:12", "gap", "conv1:10")
    assert shlex.split(command) == ["python", "-m", "ablation", "screen", STEP.name, "--set", "lr=0.1",
                                    "--set", f"layout={layout!r}"] and f'"layout={layout!r}"' in command


def test_the_steps_own_recipe_is_the_first_trial_and_the_reports_baseline(tmp_path, engine):
    values = registered_values(STEP, SPACES["6k"])
    assert values["lr"] == STEP.lr and values["layout[5]"] == 14 and values["batch_size"] == STEP.batch_size
    assert with_overrides(STEP, assignments(STEP, values)[0]).params == STEP.params  # the step itself, renamed
    assert registered_values(STEP, Space("x", "", (Dimension("lr", "log", 0.5, 0.9),))) is None  # outside the space
    s = searching.Search(STEP, SPACES["lr"], tmp_path / "search" / STEP.name, max_params=6_000)
    assert searching.search(s, 2, data=DATA) == 0
    first, second = trials(s.out)
    assert first["as_registered"] and first["values"] == {"lr": STEP.lr} and not second["as_registered"]
    assert searching.search(s, 3, data=DATA) == 0  # continued: the baseline is not queued again
    assert [t["as_registered"] for t in trials(s.out)] == [True, False, False]
    page = render_html({}, searches=searches_view(tmp_path / "search"))
    assert f"The step as registered, trained and scored the same way (trial {first['number']}): <b>" in page
    assert "<b>the step as registered</b>" in page
    assert screen_of(STEP.name, first["values"], {}) == {"screened": False, "verdict": "", "passed": False, "command": ""}


def test_a_baseline_cut_short_is_queued_again_as_the_baseline(tmp_path, engine):
    s = searching.Search(STEP, SPACES["lr"], tmp_path / "search" / STEP.name, max_params=6_000)
    study = searching.open_study(s, create=True)
    searching.queue_as_registered(study, s)
    killed = study.ask()  # the baseline, taken and left running before it drew its values, as by a killed process
    assert searching.requeue_stale(study, s) == [killed.number]
    searching.queue_as_registered(study, s)  # queued again already: nothing more
    again = study.ask()
    assert again.user_attrs == {"as_registered": True, "requeued_from": killed.number}
    assert suggest(again, s.space) == {"lr": STEP.lr}
    assert len(study.get_trials(deepcopy=False)) == 2

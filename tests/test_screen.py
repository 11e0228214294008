"""k-fold screening: folds are found where run writes them, pairs are (fold, seed) with the step as registered,
the rule decides as it says, what is missing is what gets trained, and the report and CLI show it."""
from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from ablation.runs import records

from ablation import report
from ablation.cli import main
from ablation.runs.measure import preview_views
from ablation.runs.records import load_folds
from ablation.study.screen import Pair, Rule, fold_dir, pairs, to_train, verdict
from ablation.engine.models import for_config
from ablation.study.registry import STEPS, with_overrides
from test_report import make_record, write_records

pytestmark = pytest.mark.fast

STEP = "3-gap"
VARIANT = with_overrides(STEPS[STEP], ["lr=0.05"])


def held_out(step_name: str, seed: int, fold: int, top: float, *, config: dict | None = None, base: str = STEP,
             **kw) -> dict:
    """A held-out record of `base`'s config (with `config` changed) filed under `step_name`."""
    r = make_record(base, seed, top=top, **kw)
    r["step"] = step_name
    r["config"].update(config or {})
    r["evaluated_on"] = f"validation (10000 held out of train{f', fold {fold}' if fold else ''})"
    return r


def final(r: dict) -> float:
    return r["history"][-1]["test_acc"]


@pytest.fixture
def folds(tmp_path):
    """Folds 0-2, seed 0 each (and seed 1 in fold 0): the step, its variant, and decoys that must not pair."""
    validation = tmp_path / "validation"
    lr = {"lr": 0.05}
    written = {
        0: [held_out(STEP, 0, 0, 99.20), held_out(STEP, 1, 0, 99.10), held_out(VARIANT.name, 0, 0, 99.30, config=lr),
            held_out(VARIANT.name, 1, 0, 99.05, config=lr)],
        # the step as registered, filed under a draft name, still pairs; a run of another config does not
        1: [held_out("3-draft", 0, 1, 99.00), held_out(f"{STEP}[lr=0.3]", 1, 1, 99.9, config={"lr": 0.3}),
            held_out(VARIANT.name, 0, 1, 99.10, config=lr), held_out(VARIANT.name, 1, 1, 99.9, config=lr)],
        # a diverged variant run pairs with no final accuracy, and fails the screen
        2: [held_out(STEP, 0, 2, 99.25), held_out(VARIANT.name, 0, 2, 99.0, config=lr, diverged_at=3)],
    }
    for k, records in written.items():
        write_records(fold_dir(validation, k), records)
    write_records(tmp_path / "validation-folds" / "fold-x", [held_out(STEP, 0, 0, 1.0)])  # not a fold
    return validation, written


def test_fold_0_is_the_validation_folder_and_fold_k_sits_beside_it(tmp_path):
    assert fold_dir(tmp_path / "validation", 0) == tmp_path / "validation"
    assert fold_dir(tmp_path / "validation", 3) == tmp_path / "validation-folds" / "fold-3"


def test_pairs_are_fold_and_seed_with_the_step_as_registered(folds):
    validation, written = folds
    loaded = load_folds(validation)
    assert sorted(loaded) == [0, 1, 2]
    found = pairs(STEPS[STEP], VARIANT.name, loaded)
    assert [(p.fold, p.seed) for p in found] == [(0, 0), (0, 1), (1, 0), (2, 0)]  # not fold 1 seed 1 (no base)
    assert math.isnan(found[3].variant) and not math.isnan(found[3].base)
    lowest = {(k, r["step"], r["seed"]): min(h["test_acc"] for h in r["history"][-5:]) for k, rs in written.items() for r in rs}
    assert (found[0].base_min, found[0].variant_min) == (lowest[(0, STEP, 0)], lowest[(0, VARIANT.name, 0)])
    by_name = {(k, r["step"], r["seed"]): final(r) for k, rs in written.items() for r in rs}
    assert found[2].base == by_name[(1, "3-draft", 0)] and found[2].variant == by_name[(1, VARIANT.name, 0)]
    assert [p.delta for p in found[:3]] == [by_name[(k, VARIANT.name, s)] - by_name[(k, STEP, s) if k == 0 else (k, "3-draft", s)]
                                        for k, s in ((0, 0), (0, 1), (1, 0))]


def test_a_variant_config_screened_before_under_another_name_is_paired_not_retrained(folds):
    validation, _ = folds
    # The same config as a variant of another step: named after that step, found by its config.
    elsewhere = held_out("3b-other[lr=0.05]", 0, 3, 99.4, config={"lr": 0.05})
    write_records(fold_dir(validation, 3), [held_out(STEP, 0, 3, 99.1), elsewhere])
    loaded = load_folds(validation)
    by_config = pairs(STEPS[STEP], VARIANT, loaded)
    assert [(p.fold, p.seed) for p in by_config] == [(0, 0), (0, 1), (1, 0), (2, 0), (3, 0)]
    assert by_config[-1].variant == final(elsewhere)
    assert [(p.fold, p.seed) for p in pairs(STEPS[STEP], VARIANT.name, loaded)] == [(0, 0), (0, 1), (1, 0), (2, 0)]
    assert to_train(STEPS[STEP], VARIANT, loaded, [3], [0]) == []


def test_a_variant_paired_with_the_steps_runs_of_an_older_engine_says_so(tmp_path):
    """The screens pair today's variants with fold runs of the step that an older engine generation made (they
    were kept, not retrained): the verdict names both generations; pairs of one generation say nothing."""
    validation = tmp_path / "validation"
    for k in range(6):
        old = held_out(STEP, 0, k, 99.20)
        old["provenance"]["generation"] = 1
        write_records(fold_dir(validation, k), [old, held_out(VARIANT.name, 0, k, 99.30, config={"lr": 0.05})])
    found = pairs(STEPS[STEP], VARIANT, load_folds(validation))
    v = verdict(found)
    assert {p.generations for p in found} == {(1, records.GENERATION)}
    assert v["across"] == f"the step's runs engine generation 1, the variant's {records.GENERATION}"
    assert v["text"].endswith("; paired across engines: " + v["across"])
    assert v["passed"]  # said, not judged: the rule is the same
    same = pairs(STEPS[STEP], VARIANT.name, {0: {STEP: [held_out(STEP, 0, 0, 99.2)],
                                                VARIANT.name: [held_out(VARIANT.name, 0, 0, 99.3, config={"lr": 0.05})]}})
    assert verdict(same)["across"] == "" and "engines" not in verdict(same)["text"]


def test_what_is_missing_is_what_gets_trained(folds):
    validation, _ = folds
    todo = to_train(STEPS[STEP], VARIANT, load_folds(validation), [0, 1, 2, 3], [0, 1])
    # fold 1 seed 1 ran another config only; fold 2 seed 0's diverged variant counts as done; fold 3 is new
    assert [(s.name, k, seed) for s, k, seed in todo] == [
        (STEP, 1, 1), (STEP, 2, 1), (VARIANT.name, 2, 1),
        (STEP, 3, 0), (STEP, 3, 1), (VARIANT.name, 3, 0), (VARIANT.name, 3, 1)]


@pytest.mark.parametrize("deltas, passed", [
    ([0.1, 0.1, 0.1, -0.05, 0.1, 0.1], True),  # +0.075, ahead in 5 of 6 (needs 5)
    ([0.3, 0.3, 0.3, -0.1, -0.1, 0.1], False),  # +0.13 but ahead in only 4 of 6
    ([0.04, 0.05, 0.06, 0.04, 0.04, 0.05], False),  # ahead in all, but +0.047 < +0.05
    ([0.1, 0.1, 0.1, 0.1, 0.1, -0.15], True),  # +0.058, ahead in 5 of 6
    ([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, -0.1], True),  # more pairs than needed: 7 of 8 ahead (needs 6)
    ([0.2, 0.2, 0.2, 0.2, 0.2, -0.05, -0.05, -0.05], False),  # +0.106 but 5 of 8 ahead, short of 75 % (needs 6)
    ([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, -0.1, -0.1], True),  # 6 of 8 ahead is 75 %, and +0.05 exactly is enough
    ([0.0, 0.04, 0.13, 0.07, 0.02, 0.04], True),  # 30 images over six folds of 10,000: +0.05 % exactly, 5 of 6
    ([0.0, 0.04, 0.12, 0.07, 0.02, 0.04], False),  # one image fewer: +0.048 %
])
def test_the_rule_needs_both_the_mean_gain_and_the_share_ahead(deltas, passed):
    found = [Pair(k, 0, 99.0, 99.0 + d) for k, d in enumerate(deltas)]
    v = verdict(found)
    assert v["passed"] is passed
    assert v["mean"] == pytest.approx(statistics.fmean(deltas)) and v["ahead"] == sum(d > 0 for d in deltas)
    assert v["text"].startswith("passes" if passed else "fails")
    assert verdict(found, Rule(min_gain=-1.0, min_ahead=0.0))["passed"]


def test_a_gain_that_comes_with_lower_minima_over_the_last_epochs_fails():
    # Step 15's screen: ahead on every fold by +0.06 % on average, its lowest last-5 accuracy 0.16 % lower.
    found = [Pair(k, 0, 99.2, 99.26, base_min=99.15, variant_min=98.99) for k in range(6)]
    v = verdict(found)
    assert not v["passed"] and v["floor_change"] == pytest.approx(-0.16)
    assert verdict(found, Rule(min_floor_change=-0.2))["passed"]
    steadier = [Pair(k, 0, 99.2, 99.26, base_min=99.15, variant_min=99.15) for k in range(6)]
    assert verdict(steadier)["passed"]


def test_a_variant_that_diverged_in_any_pair_fails_however_the_others_went():
    found = [Pair(k, 0, 99.0, 99.5) for k in range(6)] + [Pair(6, 0, 99.0, math.nan), Pair(7, 1, 99.0, math.nan)]
    v = verdict(found)
    assert not v["passed"] and v["text"] == "fails: diverged on fold 6 seed 0, fold 7 seed 1"
    assert v["n"] == 8 and v["mean"] == pytest.approx(0.5) and v["ahead"] == 6
    assert verdict(found[:6])["passed"]


def test_too_few_pairs_are_incomplete_however_good():
    found = [Pair(k, 0, 99.0, 99.5) for k in range(5)]
    v = verdict(found)
    assert not v["passed"] and v["text"] == "incomplete: 5 of the 6 pairs the rule needs"
    assert verdict(found, Rule(min_pairs=5))["passed"]


def test_no_pairs_is_never_a_pass():
    assert verdict([]) == {"n": 0, "passed": False, "text": "no (fold, seed) ran both"}


def test_the_report_lists_each_screened_variant_with_its_per_fold_differences_and_verdict(folds):
    validation, _ = folds
    loaded = load_folds(validation)
    (row,) = report.screen_view(loaded)  # the lr=0.3 decoy ran in one fold only, so it is not a screen
    found = pairs(STEPS[STEP], VARIANT.name, loaded)
    assert row["name"] == VARIANT.name and row["base"] == STEP and row["overrides"] == "lr=0.05"
    assert row["n"] == 4 and row["folds"] == "0, 1, 2" and row["params"] == report.count(STEPS[STEP].params)
    finished = found[:3]  # fold 2's variant diverged
    assert row["deltas"] == ", ".join(f"{p.fold}/s{p.seed}: {report.signed(p.delta)}" for p in finished) + ", 2/s0: diverged"
    assert row["mean"] == report.signed(statistics.fmean(p.delta for p in finished))
    assert row["passed"] is False and row["verdict"] == "fails: diverged on fold 2 seed 0"
    assert row["min_delta"] == report.signed(statistics.fmean(p.variant_min - p.base_min for p in finished))
    html = report.render_html({}, screens=[row])
    assert "Screens across folds" in html and row["deltas"] in html and row["verdict"] in html


def test_a_screen_without_a_change_or_with_a_fold_that_does_not_fit_is_refused(data_dir, tmp_path, capsys, monkeypatch):
    root = data_dir.resolve()
    monkeypatch.chdir(tmp_path)
    for argv, message in ((["screen", STEP], "give at least one --set"),
                          (["screen", STEP, "--set", "lr=0.05", "--folds", "5-6"], "fold must be between 0 and 5"),
                          (["screen", STEP, "--set", "lr=0.05", "--quick"], "their own --validation"),
                          (["screen", STEP, "--set", "tta=((1,0),)", "--preview", "--dry-run"], "has no --dry-run")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv + ["--data-dir", str(root)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_quick_screen_trains_what_is_missing_then_reuses_it(data_dir, tmp_path, capsys):
    validation = tmp_path / "validation"
    argv = ["screen", STEP, "--set", "lr=0.05", "--folds", "0-1", "--quick", "--validation", str(validation),
            "--data-dir", str(data_dir), "--jobs", "1"]
    assert main(argv + ["--dry-run"]) == 0
    dry = capsys.readouterr()
    assert "4 runs to train" in dry.err and dry.err.count("would train") == 4 and "no (fold, seed) ran both" in dry.out
    assert not validation.exists()
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "4 runs to train" in first.err
    for k in (0, 1):
        assert sorted(p.name for p in (fold_dir(validation, k) / VARIANT.name).iterdir()) == ["seed-0.json", "seed-0.pt"]
        assert (fold_dir(validation, k) / STEP / "seed-0.json").is_file()
    found = pairs(STEPS[STEP], VARIANT.name, load_folds(validation))
    assert [(p.fold, p.seed) for p in found] == [(0, 0), (1, 0)]
    for p in found:
        assert f"{p.delta:+.2f}" in first.out
    written = [r for k in (0, 1) for runs in load_folds(validation)[k].values() for r in runs]
    assert len(written) == 4 and all(r["evaluated_on"].startswith("validation") for r in written)  # never the test set
    assert main(argv) == 0
    second = capsys.readouterr()
    assert "0 runs to train" in second.err and second.out == first.out


VIEWS = with_overrides(STEPS[STEP], ["tta=((1,0),(0,1))", "tta_rotations=(5.0,)"])


def test_a_preview_of_views_measures_on_saved_weights_what_training_the_variant_records(data_dir, mnist, tmp_path,
                                                                                         capsys):
    validation = tmp_path / "validation"
    argv = ["screen", STEP, "--set", "tta=((1,0),(0,1))", "--set", "tta_rotations=(5.0,)", "--folds", "0-1",
            "--quick", "--validation", str(validation), "--data-dir", str(data_dir), "--jobs", "1"]
    assert main(argv) == 0  # trains the step and the variant, each on both folds
    trained = {p.fold: p for p in pairs(STEPS[STEP], VIEWS, load_folds(validation))}
    capsys.readouterr()

    assert main(argv + ["--preview"]) == 0
    out = capsys.readouterr().out
    found, left_out = preview_views(STEPS[STEP], VIEWS, validation, mnist, holdout=10_000, fold_ids=[0, 1],
                                    seeds=[0], limit_test=1000)
    assert not left_out and [(p.fold, p.seed) for p in found] == [(0, 0), (1, 0)]
    for p in found:  # the variant's trained runs end with the step's weights: the preview measures them exactly
        assert (p.base, p.variant) == pytest.approx((trained[p.fold].base, trained[p.fold].variant), abs=1e-4)
        assert f"{p.delta:+.2f}" in out and math.isnan(p.variant_min)
    assert any(p.variant != p.base for p in found)  # the views were applied, not the step's own evaluation
    assert "not a verdict" in out

    # a fold without the step's runs is named with the command that trains it; the preview is not complete
    assert main(argv[:6] + ["--folds", "0-2"] + argv[8:] + ["--preview"]) == 2
    assert "left out: fold 2 seed 0: no run of 3-gap (python -m ablation run --steps 3-gap" in capsys.readouterr().err

    # weights that do not give their record's accuracy, by one image, measure nothing: left out, not paired
    record_path = validation / STEP / "seed-0.json"
    record = json.loads(record_path.read_text())
    record["history"][-1]["test_acc"] += 100 / 1000
    record_path.write_text(json.dumps(record))
    assert main(argv + ["--preview"]) == 2
    captured = capsys.readouterr()
    assert "left out: fold 0 seed 0:" in captured.err and "its record" in captured.err
    assert [line.split()[:2] for line in captured.out.splitlines()[2:3]] == [["1", "0"]]  # fold 1 is still paired


def test_a_preview_pairs_a_run_filed_under_another_name_and_leaves_out_what_it_cannot_measure(mnist, tmp_path):
    """Step 19's fold runs are filed under the name they were screened as: the weights are found beside the
    record, wherever it is. A diverged run, a record without weights, one made on another thread count, a missing
    run, a loss that disagrees with the weights' and a record of another number of images are left out, each
    with its reason."""
    validation, held = tmp_path / "validation", mnist.holdout(10_000)
    images, labels = held.test_images[:300], held.test_labels[:300]
    written = []
    for seed, name in ((0, "3-draft"), (1, STEP), (2, STEP), (3, STEP), (5, STEP), (6, STEP)):
        torch.manual_seed(seed)
        r = held_out(name, seed, 0, 0.0, diverged_at=3 if seed == 1 else None)
        weights = records.record_paths(validation, name, seed)[1]
        weights.parent.mkdir(parents=True, exist_ok=True)
        if seed != 2:
            torch.save(for_config(r["config"]).state_dict(), weights)  # an untrained network: a few % right
        if seed != 1:
            right, loss = records.measure_weights(r, weights, images, labels) if seed != 2 else (0, 0.0)
            r["history"][-1].update(test_acc=100 * right / len(labels), test_loss=loss + 1e-5 * (seed == 5))
        r["provenance"]["threads"] = torch.get_num_threads() + (seed == 3)
        r["provenance"]["eval_images"] = len(labels) + 700 * (seed == 6)
        written.append(r)
    write_records(validation, written)

    found, left_out = preview_views(STEPS[STEP], VIEWS, validation, mnist, holdout=10_000, fold_ids=[0],
                                    seeds=[0, 1, 2, 3, 4, 5, 6], limit_test=300)
    assert [(p.fold, p.seed) for p in found] == [(0, 0)]
    assert found[0].base == pytest.approx(written[0]["history"][-1]["test_acc"])
    assert [line.split(":")[0] for line in left_out] == [f"fold 0 seed {s}" for s in (1, 2, 3, 4, 5, 6)]
    assert "diverged at epoch 3" in left_out[0] and "no saved weights" in left_out[1]
    assert f"{torch.get_num_threads() + 1} thread(s)" in left_out[2]
    assert "no run of 3-gap" in left_out[3] and "--quick" in left_out[3]
    assert "its record" in left_out[4]  # the images right agree, the loss does not
    assert "evaluated on 1,000 held-out images, not 300" in left_out[5]


def test_a_preview_of_anything_but_views_is_refused(data_dir, tmp_path, capsys, monkeypatch):
    argv = ["screen", STEP, "--set", "lr=0.05", "--preview", "--validation", str(tmp_path / "validation"),
            "--data-dir", str(data_dir)]
    monkeypatch.setattr("ablation.cli.load_data", lambda *a: pytest.fail("refused only after the data loaded"))
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "this variant changes lr" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="changes lr, tta, tta_rotations"):
        preview_views(STEPS[STEP], with_overrides(VIEWS, ["lr=0.05"]), tmp_path, None, holdout=10_000, fold_ids=[0],
                      seeds=[0])


@pytest.mark.parametrize("field, value", [("min_gain", math.nan), ("min_gain", math.inf), ("min_ahead", 1.5),
                                          ("min_pairs", 0), ("min_floor_change", -math.inf)])
def test_a_rule_that_would_judge_nothing_is_refused_where_it_is_made(field, value):
    with pytest.raises(ValueError, match=f"^{field}=.* is not allowed"):
        Rule(**{field: value})

"""Distillation: where the teacher comes from, what the loss is, and that it is off unless a step asks."""
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ablation.runs import records

from ablation import train

from ablation import STEPS
from ablation.engine.distill import TeacherError, find_teachers, teacher_logits
from ablation.engine.models import normalize
from ablation.study.step import Distill, run_config
from ablation.engine.train import _distilled, initial_model

pytestmark = pytest.mark.fast
TEACHER = "1-basic"  # the smallest run to fake a teacher with
STUDENT = replace(STEPS["10-narrow-6k"], distill=Distill(TEACHER, weight=0.5, temperature=4.0))
QUICK = dict(limit_train=512, limit_test=200, epochs=1)


@pytest.fixture(scope="module")
def teacher_runs(mnist, tmp_path_factory):
    """Folders of 1-basic records for every one of its seeds: evaluated on the test set ("full"), with
    10,000 images held out ("held"), and the test-set ones less seed 4 ("partial"). Quick runs, each said
    to have trained on its whole training set (what a real teacher record says), which is all the lookup reads."""
    folders = {name: tmp_path_factory.mktemp(name) for name in ("full", "held", "partial")}
    paths = {name: [] for name in folders}
    for seed in STEPS[TEACHER].seeds:
        full = train(TEACHER, seed=seed, data=mnist, **QUICK)
        held = train(TEACHER, seed=seed, data=mnist, holdout=10_000, **QUICK)
        full.engine["train_images"], held.engine["train_images"] = 60_000, 50_000
        paths["full"].append(records.save(full, folders["full"]))
        paths["held"].append(records.save(held, folders["held"]))
        if seed != 4:
            paths["partial"].append(records.save(full, folders["partial"]))
    return folders, paths


def test_a_step_left_at_the_default_does_not_distil():
    assert not Distill().active and not Distill("8-no-dropout", weight=0.0).active
    assert all(not step.distill.active for step in STEPS.values() if step.distill == Distill())


def test_teachers_are_every_seed_trained_on_the_students_own_training_set(teacher_runs):
    folders, paths = teacher_runs
    assert find_teachers(STUDENT, "test", 60_000, [folders["full"]]) == paths["full"]
    # A validation run must not learn from a teacher that trained on its held-out images ...
    assert find_teachers(STUDENT, "validation (10000 held out of train)", 50_000,
                         [folders["full"], folders["held"]]) == paths["held"]
    with pytest.raises(TeacherError, match="5000 held out"):
        find_teachers(STUDENT, "validation (5000 held out of train)", 55_000, [folders["full"], folders["held"]])
    # ... nor one that saw only part of it (a smoke run).
    with pytest.raises(TeacherError, match="train it first"):
        find_teachers(STUDENT, "test", 50_000, [folders["full"]])


def test_a_partial_ensemble_is_refused(teacher_runs):
    folders, _ = teacher_runs
    with pytest.raises(TeacherError, match=r"lacks seeds \[4\]"):
        find_teachers(STUDENT, "test", 60_000, [folders["partial"], folders["full"]])


def test_the_first_folder_with_teachers_wins(teacher_runs, tmp_path):
    folders, paths = teacher_runs
    assert find_teachers(STUDENT, "test", 60_000, [tmp_path, folders["full"]]) == paths["full"]


def test_teacher_logits_are_the_ensemble_mean_on_clean_images(teacher_runs, mnist):
    _, paths = teacher_runs
    two = paths["full"][:2]
    subset = type(mnist)(mnist.train_images[:300], mnist.train_labels[:300], mnist.test_images, mnist.test_labels)
    logits, used = teacher_logits(STUDENT, subset, two)
    outputs = []
    for path in two:
        model = initial_model(STEPS[TEACHER], 0)
        model.load_state_dict(records.load_weights(path.with_suffix(".pt")))
        with torch.no_grad():
            outputs.append(model.eval()(normalize(subset.train_images).unsqueeze(1)).view(300, 10))
    torch.testing.assert_close(logits, (outputs[0] + outputs[1]) / 2)
    assert [u["record"] for u in used] == [str(p) for p in two] and all(len(u["weights_sha256"]) == 16 for u in used)


def test_a_teacher_evaluated_with_shifts_teaches_what_it_predicts(teacher_runs, mnist, monkeypatch):
    _, paths = teacher_runs
    shifted = replace(STEPS[TEACHER], tta=((1, 0), (0, -1)))
    monkeypatch.setitem(STEPS, TEACHER, shifted)
    subset = type(mnist)(mnist.train_images[:300], mnist.train_labels[:300], mnist.test_images, mnist.test_labels)
    logits, _ = teacher_logits(STUDENT, subset, paths["full"][:1])
    model = initial_model(shifted, 0)
    model.load_state_dict(records.load_weights(paths["full"][0].with_suffix(".pt")))
    with torch.no_grad():
        views = model.eval()(normalize(subset.train_images).unsqueeze(1))
        plain = model._logits(normalize(subset.train_images).unsqueeze(1))
    torch.testing.assert_close(logits, views)
    assert not torch.allclose(views.log_softmax(-1), plain.log_softmax(-1))


def test_the_loss_is_the_label_loss_plus_the_scaled_kl_to_the_teacher():
    torch.manual_seed(0)
    logits, hard = torch.randn(8, 3, 10), torch.rand(3)
    same = F.log_softmax(logits / 4.0, dim=-1)
    # A student that already matches its teacher pays only its share of the label loss ...
    torch.testing.assert_close(_distilled(hard, logits, same, STUDENT), 0.5 * hard)
    # ... and otherwise w * T^2 * KL on top, per seed.
    other = F.log_softmax(torch.randn(8, 3, 10), dim=-1)
    kl = (other.exp() * (other - same)).sum(-1).mean(0)
    torch.testing.assert_close(_distilled(hard, logits, other, STUDENT), 0.5 * hard + 0.5 * 16 * kl)


def test_a_distilled_run_is_deterministic_and_names_its_teachers(teacher_runs, mnist):
    folders, paths = teacher_runs
    a = train(STUDENT, seed=0, data=mnist, teacher_dirs=[folders["full"]], **QUICK)
    b = train(STUDENT, seed=0, data=mnist, teacher_dirs=[folders["full"]], **QUICK)
    plain = train(replace(STUDENT, distill=Distill()), seed=0, data=mnist, **QUICK)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"] != plain.history[0]["train_loss"]
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert [t["record"] for t in a.engine["teachers"]] == [str(p) for p in paths["full"]]
    assert "teachers" not in plain.engine


def test_a_missing_teacher_is_a_clear_error(mnist, tmp_path):
    with pytest.raises(TeacherError, match=f"train it first: python -m ablation run --steps {TEACHER}"):
        train(STUDENT, seed=0, data=mnist, teacher_dirs=[tmp_path], **QUICK)


def test_the_distill_field_is_part_of_the_run_config():
    assert run_config(STUDENT)["distill"] == {"teacher": TEACHER, "weight": 0.5, "temperature": 4.0}

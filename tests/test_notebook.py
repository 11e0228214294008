"""The notebook implementation on tiny runs: its schedule against the engine's, records, determinism, refusals,
and the side-by-side comparison on hand-made records."""
import json
import math

import pytest
import torch

from ablation.reference import notebook

from ablation.runs import records
from ablation.cli import QUICK, main
from ablation.reference.notebook import LRSchedule, train_notebook
from ablation.study.survival import compare_implementations, welch_interval95
from ablation.runs.records import without_timings
from ablation.study.registry import STEPS, get_step
from ablation.study.step import Goals
from ablation.engine.schedule import learning_rate
from ablation.engine.train import train

pytestmark = pytest.mark.fast
TINY = dict(limit_train=256, limit_test=200, epochs=2)
FULL_ITERS_PER_EPOCH = math.ceil(60_000 / 128)


def scheduled_rates(step, iters_per_epoch: int) -> tuple[list[float], list[float]]:
    """(lr, momentum) of every iteration as the notebook loop drives torch's schedulers."""
    weight = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([weight], lr=step.lr, momentum=step.momentum)
    schedule = LRSchedule(step, opt, iters_per_epoch)
    lrs, momenta = [], []
    for _ in range(step.epochs):
        for _ in range(iters_per_epoch):
            lrs.append(opt.param_groups[0]["lr"])
            momenta.append(opt.param_groups[0]["momentum"])
            opt.step()  # no gradient: nothing moves, but the scheduler sees the optimiser stepped first
            schedule.batch_done()
        schedule.epoch_done()
    return lrs, momenta


def assert_engine_rates(step, iters_per_epoch: int) -> None:
    lrs, momenta = scheduled_rates(step, iters_per_epoch)
    for i, lr in enumerate(lrs):
        expected = learning_rate(step, i, iters_per_epoch)
        assert lr == pytest.approx(expected, rel=1e-9, abs=0), f"iteration {i}"
    assert set(momenta) == {step.momentum}  # OneCycleLR's momentum cycling is off: the step fixes it


def test_final_steps_learning_rate_is_the_engines_at_every_iteration():
    assert_engine_rates(get_step("final"), FULL_ITERS_PER_EPOCH)


@pytest.mark.parametrize("step", [pytest.param(s, id=s.name) for s in STEPS.values()])
def test_every_steps_schedule_is_the_engines_on_a_short_epoch(step):
    assert_engine_rates(step, 7)


def test_a_quick_run_writes_a_record_the_project_reads(data_dir, tmp_path):
    step = get_step("final")
    result = train_notebook(step, 0, data_dir=data_dir, **TINY)
    path = records.save(result, tmp_path)
    record = records.load(path)
    engine = train(step, 0, data_dir=data_dir, **TINY)
    assert path == tmp_path / step.name / "seed-0.json" and path.with_suffix(".pt").is_file()
    assert record["provenance"]["implementation"] == "notebook"
    assert "implementation" not in records.to_record(engine)["provenance"]
    assert [list(row) for row in record["history"]] == [list(row) for row in engine.history]
    assert [row["lr"] for row in record["history"]] == pytest.approx([row["lr"] for row in engine.history], rel=1e-9)
    assert record["params"] == engine.params and record["provenance"]["train_images"] == TINY["limit_train"]
    assert records.saved_model(record, path.with_suffix(".pt")) is not None


def test_the_same_seed_gives_the_same_run_and_another_seed_another(data_dir):
    a, b = (train_notebook("final", 3, data_dir=data_dir, **TINY) for _ in range(2))
    assert without_timings(a.history) == without_timings(b.history)
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    c = train_notebook("final", 4, data_dir=data_dir, **TINY)
    assert without_timings(c.history) != without_timings(a.history)


def test_the_callers_random_state_is_left_alone(data_dir):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    train_notebook("final", 0, data_dir=data_dir, limit_train=128, limit_test=100, epochs=1)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", ["5-lr-schedule", "final"])
def test_with_all_four_of_the_engines_streams_the_notebook_loop_is_the_engine(name, data_dir):
    """Init, order, augmentation and dropout as the engine draws them: what is left between the two loops is the
    summation order of float32 (and the schedule's last bit), so any other difference would be a bug in one.

    Measured, not guessed (these two steps; this CPU natively and with oneDNN capped at AVX2 and SSE4.1):
    float32 drift moved the losses by at most 3e-7 relative in epoch 1 and 2e-5 in epoch 2, the weights by up
    to 5e-3 and the accuracy of these barely trained networks by two test images (under AVX2); one detail drawn
    otherwise (the order, the augmentation or the dropout) moved the training loss by 5e-4 or more in epoch 1
    and 2e-3 in epoch 2. So the losses decide; the weights and accuracies, which float drift alone moves almost
    as far, do not."""
    notes = train_notebook(name, 0, data_dir=data_dir, like_engine=notebook.ENGINE_DETAILS, **TINY)
    engine = train(name, 0, data_dir=data_dir, **TINY)
    assert notes.engine["like_engine"] == list(notebook.ENGINE_DETAILS)
    for mine, theirs, rel in zip(without_timings(notes.history), without_timings(engine.history), (1e-5, 2e-4),
                                 strict=True):
        assert mine["lr"] == pytest.approx(theirs["lr"], rel=1e-9)
        for key in ("train_loss", "test_loss"):
            assert mine[key] == pytest.approx(theirs[key], rel=rel), f"epoch {theirs['epoch']} {key}"


def test_each_engine_detail_alone_changes_the_run_and_an_unknown_one_is_refused(data_dir):
    quick = dict(data_dir=data_dir, limit_train=128, limit_test=100, epochs=1)
    plain = without_timings(train_notebook("final", 0, **quick).history)
    for detail in ("init", "order", "augment"):  # the final step has no dropout to draw
        assert without_timings(train_notebook("final", 0, like_engine=(detail,), **quick).history) != plain, detail
    with pytest.raises(ValueError, match="'shuffle'"):
        train_notebook("final", 0, like_engine=("shuffle",), **quick)


@pytest.mark.parametrize("step, named", [
    pytest.param(STEPS["16-weight-average"], "ema", id="16-weight-average"),
])
def test_what_the_notebook_does_not_implement_is_refused(step, named, data_dir):
    with pytest.raises(ValueError, match=named):
        train_notebook(step, 0, data_dir=data_dir, **TINY)


def test_the_pipeline_is_the_steps_augmentation_then_the_normalisation():
    from torchvision import transforms

    step = get_step("final")
    jitter, rotate, *rest = notebook.transforms_for(step, True).transforms
    assert isinstance(jitter, transforms.ColorJitter) and jitter.brightness == (0.9, 1.1) and jitter.contrast == (0.9, 1.1)
    assert jitter.saturation is None and jitter.hue is None
    assert isinstance(rotate, transforms.RandomRotation) and rotate.degrees == [-7.0, 7.0]
    assert rotate.interpolation == transforms.InterpolationMode.NEAREST and rotate.fill == 0
    clean = notebook.transforms_for(step, False).transforms
    assert [type(t) for t in rest] == [type(t) for t in clean] == [transforms.ToTensor, transforms.Normalize]


def test_cli_quick_run_writes_marked_records_and_keeps_quick_runs_out_of_the_default_folder(data_dir, tmp_path,
                                                                                              monkeypatch, capsys):
    monkeypatch.setitem(QUICK, "limit_train", 128)
    monkeypatch.setitem(QUICK, "limit_test", 100)
    argv = ["notebook", "--steps", "final", "--seeds", "0,1", "--runs", str(tmp_path), "--quick", "--data-dir",
            str(data_dir)]
    assert main(argv) == 0
    found = records.load_all(tmp_path)[get_step("final").name]
    assert [r["seed"] for r in found] == [0, 1] and all(len(r["history"]) == 1 for r in found)
    assert {notebook.implementation_of(r) for r in found} == {"notebook"}
    err = capsys.readouterr().err
    assert "seed 0 epoch  1" in err and "[2/2]" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["notebook", "--quick", "--seeds", "0"])
    assert exit_info.value.code == 2 and "--quick runs are smoke tests" in capsys.readouterr().err
    assert main(["notebook", "--steps", "16-weight-average", "--seeds", "0", "--runs", str(tmp_path)]) == 2
    assert "does not implement a weight average (ema)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["notebook", "--like-engine", "augment", "--seeds", "0"])
    assert exit_info.value.code == 2 and "--like-engine runs are one-change checks" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["notebook", "--like-engine", "augment,weights", "--runs", str(tmp_path)])
    assert exit_info.value.code == 2 and "like_engine takes init, order, augment, dropout; got 'weights'" in \
        capsys.readouterr().err


# --- compare_implementations on hand-made records ---------------------------------------------------

GOALS = Goals(accuracy_floor=99.4, last_epochs=2)


def record(seed: int, accuracies: list[float], implementation: str | None = None, diverged_at=None) -> dict:
    provenance = {"implementation": implementation} if implementation else {}
    return {"seed": seed, "history": [{"epoch": i + 1, "test_acc": a} for i, a in enumerate(accuracies)],
            "diverged_at": diverged_at, "provenance": provenance}


def test_comparison_counts_the_floor_and_gives_the_welch_interval_by_hand():
    engine = [record(0, [99.0, 99.42, 99.40]), record(1, [99.1, 99.41, 99.50]), record(2, [99.2, 99.45, 99.45])]
    notes = [record(0, [99.0, 99.35, 99.30], "notebook"), record(1, [99.0, 99.40, 99.40], "notebook")]
    c = compare_implementations(engine, notes, GOALS)
    e, n = c["engine"], c["notebook"]
    assert (e["n"], e["holding_floor"], n["n"], n["holding_floor"]) == (3, 3, 2, 1)
    assert n["holding_seeds"] == [1]
    assert e["final_mean"] == pytest.approx(99.45) and e["final_std"] == pytest.approx(0.05)
    assert e["lowest_last"] == pytest.approx([99.40, 99.41, 99.45])
    assert n["final_mean"] == pytest.approx(99.35) and n["final_std"] == pytest.approx(math.sqrt(0.005))
    # Welch by hand: standard error sqrt(0.05²/3 + 0.005/2) = 0.057735; df 1.684, rounded down to 1: t = 12.706.
    d = c["difference"]["final"]
    assert d["mean"] == pytest.approx(-0.10)
    assert d["ci95"] == pytest.approx((-0.10 - 12.706 * 0.0577350, -0.10 + 12.706 * 0.0577350), rel=1e-5)
    assert not d["beyond_noise"]
    assert [notebook.implementation_of(r) for r in engine + notes] == ["engine"] * 3 + ["notebook"] * 2
    assert "1 of 2" in notebook.format_comparison(c)


def test_a_clear_difference_is_beyond_noise_and_a_diverged_run_does_not_hold_the_floor():
    engine = [record(s, [99.5, 99.5 + s / 100]) for s in range(5)]
    notes = [record(s, [99.3, 99.3 + s / 100], "notebook") for s in range(4)] + [record(4, [99.5], "notebook", 2)]
    c = compare_implementations(engine, notes, GOALS)
    assert c["notebook"]["holding_floor"] == 0 and c["notebook"]["final"] == pytest.approx([99.3, 99.31, 99.32, 99.33])
    d = c["difference"]["final"]
    assert d["mean"] == pytest.approx(-0.205) and d["beyond_noise"] and d["ci95"][1] < 0


def test_welch_interval_with_too_few_runs_is_nan_and_with_no_spread_is_the_difference():
    assert all(math.isnan(v) for v in welch_interval95([99.4], [99.5])[1:])
    assert welch_interval95([99.4, 99.4], [99.5, 99.5]) == pytest.approx((0.1, 0.1, 0.1))


def test_cli_compare_sets_each_implementations_records_side_by_side(tmp_path, capsys):
    step = get_step("final")
    for folder, implementation, accuracies in (("engine", None, [99.5, 99.45, 99.5]), ("notes", "notebook", [99.4, 99.3])):
        for seed, acc in enumerate(accuracies):
            path = tmp_path / folder / step.name / f"seed-{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"schema": records.SCHEMA_VERSION, "step": step.name, "params": step.params,
                                        "evaluated_on": "test", "config": {},
                                        **record(seed, [acc] * 5, implementation)}))
    argv = ["notebook", "--steps", "final", "--compare", str(tmp_path / "engine"), "--runs", str(tmp_path / "notes")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "engine seeds [0, 1, 2], notebook seeds [0, 1]" in out and "notebook - engine, final accuracy: -0.133 %" in out
    assert main(argv + ["--seeds", "0"]) == 0 and "engine seeds [0], notebook seeds [0]" in capsys.readouterr().out
    assert main(argv[:-1] + [str(tmp_path / "none")]) == 1


def pil_images(images):
    from PIL import Image

    return [Image.fromarray(im.numpy(), mode="L") for im in images]


def as_float(pil_images) -> torch.Tensor:
    import torchvision.transforms.functional as TF

    return torch.stack([TF.pil_to_tensor(im)[0] for im in pil_images]).float() / 255


@pytest.mark.parametrize("angle", [-7.0, -3.3, 2.5, 6.9])
def test_pils_nearest_rotation_is_the_engines_but_for_a_few_tied_pixels(angle, mnist):
    import torchvision.transforms.functional as TF

    from ablation.engine import augment as aug

    images = mnist.train_images[:200]
    params = torch.tensor([[angle, 1, 1, 0]]).expand(len(images), -1)
    engine = aug.apply(images.unsqueeze(1).float() / 255, params, aug.Augment(rotation=7))[:, 0]
    pil = as_float([TF.rotate(im, angle, interpolation=TF.InterpolationMode.NEAREST, fill=0) for im in pil_images(images)])
    assert ((engine - pil).abs() > 1.5 / 255).float().mean() < 0.005


def test_pils_jitter_is_the_engines_within_two_grey_levels(mnist):
    """PIL rounds each step to uint8 and contrast's mean to a whole grey level; the engine stays in float."""
    import torchvision.transforms.functional as TF

    from ablation.engine import augment as aug

    images = mnist.train_images[:200]
    for bright_first, flag in ((True, 0), (False, 1)):
        params = torch.tensor([[0, 1.07, 0.93, flag]]).expand(len(images), -1)
        engine = aug.apply(images.unsqueeze(1).float() / 255, params, aug.Augment(brightness=0.1, contrast=0.1))[:, 0]
        jitter = ((lambda im: TF.adjust_contrast(TF.adjust_brightness(im, 1.07), 0.93)) if bright_first
                  else (lambda im: TF.adjust_brightness(TF.adjust_contrast(im, 0.93), 1.07)))
        pil = as_float([jitter(im) for im in pil_images(images)])
        assert (engine - pil).abs().max() <= 2.5 / 255

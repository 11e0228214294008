"""The engine on short quick runs: determinism, seed independence, the multi-seed fast path, faults."""
import math

import pytest
import torch

from ablation import train

from ablation import STEPS, build_model, train_many
from ablation.runs.records import without_timings
from ablation.study.registry import with_overrides
from ablation.study.step import Schedule
from ablation.engine.models import Net, for_step, normalize
from ablation.engine.schedule import learning_rate
from ablation.engine.train import _average_pairs, _update_average, generator

pytestmark = pytest.mark.fast
QUICK = dict(limit_train=1024, limit_test=500, epochs=1)


@pytest.fixture(scope="module")
def quick_step():
    # The seed's final recipe: augmentation, dropout, BatchNorm and a schedule all exercised.
    return STEPS["5-lr-schedule"]


def test_same_seed_gives_bit_identical_history_and_weights(quick_step, mnist):
    a = train(quick_step, seed=3, data=mnist, **QUICK)
    b = train(quick_step, seed=3, data=mnist, **QUICK)
    assert without_timings(a.history) == without_timings(b.history)
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def test_different_seeds_give_different_histories(quick_step, mnist):
    a = train(quick_step, seed=0, data=mnist, **QUICK)
    b = train(quick_step, seed=1, data=mnist, **QUICK)
    assert a.history[0]["train_loss"] != b.history[0]["train_loss"]
    assert not torch.equal(a.state_dict["features.0.0.weight"], b.state_dict["features.0.0.weight"])


def test_each_seed_has_distinct_generator_streams():
    seeds = [generator(s, stream, torch.device("cpu")).initial_seed()
             for s in range(50) for stream in ("init", "order", "augment", "dropout")]
    assert len(set(seeds)) == len(seeds)


@pytest.mark.parametrize("name, overrides", [("2-bn-dropout", []), ("5-lr-schedule", []), ("10-narrow-6k", []),
                                             ("17-average-long-anneal", [])])
def test_multi_seed_pass_matches_one_seed_runs(name, overrides, mnist):
    """Seed k of a K-seed pass draws exactly what a one-seed run of seed k draws (same init, order,
    augmentation and dropout masks); only the grouped convolution's float summation order differs.
    Training amplifies that rounding about tenfold per SGD step at these learning rates (measured:
    5e-6 after one step, 4e-3 after four, 0.3 after sixteen), so the paths are compared over two
    steps, where any real difference in what a seed sees would show at full size."""
    step = with_overrides(STEPS[name], overrides)
    quick = dict(limit_train=2 * step.batch_size, limit_test=500, epochs=1)
    many = train_many(step, [4, 7, 9], data=mnist, **quick)
    for result in many:
        alone = train(step, seed=result.seed, data=mnist, **quick)
        assert result.history[0]["train_loss"] == pytest.approx(alone.history[0]["train_loss"], rel=1e-5)
        assert abs(result.history[0]["test_acc"] - alone.history[0]["test_acc"]) <= 0.4  # at most 2 of 500 images
        for key, tensor in alone.state_dict.items():
            torch.testing.assert_close(result.state_dict[key], tensor, rtol=1e-3, atol=1e-3, msg=key)


def accuracy_with(model: torch.nn.Module, state_dict: dict, mnist) -> float:
    """Percent of the first 500 test images that `model`, loaded with `state_dict`, gets right (QUICK's test set)."""
    model.load_state_dict(state_dict)
    model.eval()
    with torch.no_grad():
        logits = model(normalize(mnist.test_images[:500]).unsqueeze(1))
    return (logits.argmax(1) == mnist.test_labels[:500]).float().mean().item() * 100


def test_weights_load_into_the_public_model(quick_step, mnist):
    result = train(quick_step, seed=0, data=mnist, **QUICK)
    accuracy = accuracy_with(build_model(quick_step.name), result.state_dict, mnist)
    assert accuracy == pytest.approx(result.history[-1]["test_acc"], abs=1e-4)


def test_weight_average_is_what_is_evaluated_and_saved_and_leaves_training_alone(quick_step, mnist):
    plain = train(quick_step, seed=0, data=mnist, **QUICK)
    averaged_step = with_overrides(quick_step, ["ema=0.9"])
    averaged = train(averaged_step, seed=0, data=mnist, **QUICK)
    # The live model trains exactly as without the average: same losses, same batches.
    assert averaged.history[0]["train_loss"] == plain.history[0]["train_loss"]
    assert averaged.history[0]["train_acc"] == plain.history[0]["train_acc"]
    assert not torch.equal(averaged.state_dict["features.0.0.weight"], plain.state_dict["features.0.0.weight"])
    # What is evaluated each epoch, and saved, is the average.
    assert averaged.history[-1]["test_loss"] != plain.history[-1]["test_loss"]
    model = for_step(averaged_step)
    assert accuracy_with(model, averaged.state_dict, mnist) == pytest.approx(averaged.history[-1]["test_acc"], abs=1e-4)


@pytest.mark.parametrize("views", [["tta=((1,0),(-1,0),(0,1),(0,-1))"], ["tta_rotations=(5.0,-5.0)"]])
def test_test_time_shifts_change_what_is_measured_not_what_is_trained(quick_step, mnist, views):
    plain = train(quick_step, seed=0, data=mnist, **QUICK)
    shifted_step = with_overrides(quick_step, views)
    shifted = train(shifted_step, seed=0, data=mnist, **QUICK)
    assert all(torch.equal(plain.state_dict[k], shifted.state_dict[k]) for k in plain.state_dict)
    assert shifted.history[0]["train_loss"] == plain.history[0]["train_loss"]
    assert shifted.history[0]["test_loss"] != plain.history[0]["test_loss"]
    # The public model of a step with shifts measures what its record says, from the saved weights.
    model = for_step(shifted_step)
    assert (model.shifts, model.rotations) == (shifted_step.tta, shifted_step.tta_rotations)
    assert accuracy_with(model, shifted.state_dict, mnist) == pytest.approx(shifted.history[-1]["test_acc"], abs=1e-4)



@pytest.mark.parametrize("parent, child, seeds", [("12-wide-end", "18-shifted-views", [0]),
                                                  ("13-wide-end-6k", "19-views-6k", [0, 1]),
                                                  ("16-weight-average", "16-weight-average[tta_rotations=(5.0,)]", [1])])
def test_a_step_that_only_evaluates_differently_is_trained_once_with_its_parent_and_is_bit_for_bit_its_own_run(
        parent, child, seeds, mnist):
    """train_many(parent, views=(child,)) gives the child's runs exactly as training the child would: the same
    histories and weights (the weight average's included), one training for both, and the record says whose."""
    parent, child = STEPS[parent], STEPS.get(child) or with_overrides(STEPS[parent], ["tta_rotations=(5.0,)"])
    quick = dict(limit_train=512, limit_test=300, epochs=2)
    together = train_many(parent, seeds, data=mnist, views=(child,), **quick)
    alone = train_many(parent, seeds, data=mnist, **quick) + train_many(child, seeds, data=mnist, **quick)
    assert [(r.step.name, r.seed) for r in together] == [(r.step.name, r.seed) for r in alone]
    for joint, own in zip(together, alone):
        assert without_timings(joint.history) == without_timings(own.history)
        assert joint.state_dict.keys() == own.state_dict.keys()
        assert all(torch.equal(joint.state_dict[k], own.state_dict[k]) for k in own.state_dict)
        assert joint.engine.get("trained_with") == (parent.name if joint.step is child else None)
    assert together[-1].history[-1]["test_loss"] != together[0].history[-1]["test_loss"]  # the views measure


@pytest.mark.parametrize("name", ["1-basic", "5-lr-schedule", "17-average-long-anneal", "19-views-6k"])
def test_no_op_reads_memory_it_never_wrote(name, mnist, monkeypatch):
    """The engine runs with torch's NaN fill of new tensors off (train.FILL_UNINITIALIZED): with it on, a kernel
    that read memory it never wrote would see NaN, so the run would change. These steps use every op of the engine
    (no BatchNorm, dropout and a partial batch of 32, the weight average, shifted and turned test-time views)."""
    import ablation.engine.train as engine

    runs, seen = {}, []
    see = lambda *_: seen.append(torch.utils.deterministic.fill_uninitialized_memory)  # as the run trained
    for fill in (True, False):
        monkeypatch.setattr(engine, "FILL_UNINITIALIZED", fill)
        runs[fill] = train(STEPS[name], seed=0, data=mnist, limit_train=520, limit_test=300, epochs=2, on_epoch=see)
    assert seen == [True, True, False, False]
    assert without_timings(runs[True].history) == without_timings(runs[False].history)
    assert all(torch.equal(runs[True].state_dict[k], runs[False].state_dict[k]) for k in runs[False].state_dict)


def test_a_step_that_trains_differently_is_not_evaluated_on_another_steps_training(mnist):
    with pytest.raises(ValueError, match=r"7-onecycle cannot be evaluated on 6-bs128's training: it differs in lr, "
                                         r"schedule, not only in tta, tta_rotations"):
        train_many(STEPS["6-bs128"], [0], data=mnist, views=(STEPS["7-onecycle"],), limit_train=128, epochs=1)

def test_weight_average_ramps_up_to_its_decay_and_copies_integer_buffers():
    live, averaged = Net(("conv3:4", "gap", "conv1:10")), Net(("conv3:4", "gap", "conv1:10"))
    pairs = _average_pairs(averaged, live)  # built before the values change: they must follow the modules
    with torch.no_grad():
        for net, value in ((live, 1.0), (averaged, 0.0)):
            for tensor in [*net.parameters(), *net.buffers()]:
                tensor.fill_(value)
    _update_average(pairs, decay=0.99, iteration=1)  # the ramp: (1 + 1) / (10 + 1)
    weight = averaged.features[0][0].weight
    assert torch.allclose(weight, torch.full_like(weight, 1 - 2 / 11))
    _update_average(pairs, decay=0.99, iteration=10_000)  # the ramp is past 0.99: the decay holds
    assert torch.allclose(weight, torch.full_like(weight, 1 - (2 / 11) * 0.99))
    counters = [k for k, t in averaged.state_dict().items() if not t.is_floating_point()]
    assert counters and all(averaged.state_dict()[k].item() == 1 for k in counters)


def test_non_finite_loss_stops_the_run_and_names_the_epoch(mnist):
    exploding = with_overrides(STEPS["1-basic"], ["lr=1e8"])
    result = train(exploding, seed=0, data=mnist, limit_train=1024, limit_test=200, epochs=3)
    assert result.diverged_at == 1 and result.history == []


def test_holdout_evaluates_on_training_images_not_the_test_set(quick_step, mnist):
    result = train(quick_step, seed=0, data=mnist, holdout=10_000, limit_train=512, epochs=1)
    assert result.evaluated_on.startswith("validation") and result.engine["eval_images"] == 10_000


def test_a_fold_is_named_in_what_the_run_was_evaluated_on(quick_step, mnist):
    result = train(quick_step, seed=0, data=mnist, holdout=10_000, fold=2, limit_train=512, epochs=1)
    assert result.evaluated_on == "validation (10000 held out of train, fold 2)"


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(epochs=-2)])
def test_bad_epochs_are_rejected(quick_step, mnist, bad):
    with pytest.raises(ValueError, match="epochs"):
        train(quick_step, data=mnist, **bad)


def test_repeated_seeds_are_rejected(quick_step, mnist):
    with pytest.raises(ValueError, match="distinct"):
        train_many(quick_step, [1, 1], data=mnist, **QUICK)


def test_step_schedule_halves_every_four_epochs():
    step = STEPS["5-lr-schedule"]
    lrs = [learning_rate(step, epoch * 10, 10) for epoch in range(12)]
    assert lrs == [0.02] * 4 + [0.01] * 4 + [0.005] * 4


def test_onecycle_rises_to_the_peak_then_settles_at_its_floor():
    step = STEPS["7-onecycle"]
    s, per_epoch = step.schedule, 100
    lrs = [learning_rate(step, i, per_epoch) for i in range(step.epochs * per_epoch)]
    peak_at = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(step.lr)
    assert peak_at == round(s.warmup * s.final_epoch * per_epoch)
    assert all(a <= b for a, b in zip(lrs[:peak_at], lrs[1:peak_at + 1]))
    assert all(a >= b for a, b in zip(lrs[peak_at:], lrs[peak_at + 1:]))
    settled = lrs[s.final_epoch * per_epoch:]
    assert settled and all(math.isclose(lr, step.lr / s.final_div) for lr in settled)


def test_unknown_schedule_is_an_error():
    from dataclasses import replace

    with pytest.raises(ValueError, match="schedule"):
        learning_rate(replace(STEPS["1-basic"], schedule=Schedule(kind="cosine")), 0, 10)

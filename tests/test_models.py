"""The networks of every step: parameter budgets, output shapes, receptive field."""
from dataclasses import replace

import pytest
import torch
from hypothesis import given, strategies as st

from ablation import STEPS, build_model, count_parameters
from ablation.study.registry import FINAL_STEP
from ablation.engine.models import layer_table, receptive_field, receptive_field_probe
from ablation.engine.models import BACKGROUND, Net, for_step, normalize, parse_layout, rotate, shift, stack_seeds, unstack_seeds

pytestmark = pytest.mark.fast
STEP_PARAMS = [pytest.param(s, id=s.name) for s in STEPS.values()]
GAP_STEPS = [pytest.param(s, id=s.name) for s in STEPS.values() if "gap" in s.layout]


@pytest.mark.parametrize("step", STEP_PARAMS)
def test_parameter_count_is_declared(step):
    assert count_parameters(build_model(step.name)) == step.params


@pytest.mark.parametrize("step", STEP_PARAMS)
def test_parameter_budget(step):
    # Steps that are over budget by design say why; all others must fit.
    within = step.params <= step.goals.max_params
    assert within or step.known_miss and "parameters" in step.known_miss


def test_final_steps_are_under_10k():
    assert all(s.params < 10_000 for s in list(STEPS.values())[2:])


@pytest.mark.parametrize("step", STEP_PARAMS)
@given(batch=st.integers(min_value=1, max_value=33))
def test_output_shape_and_finite(step, batch):
    model = build_model(step.name).eval()
    with torch.no_grad():
        y = model(torch.randn(batch, 1, 28, 28))
    assert y.shape == (batch, 10)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("step", STEP_PARAMS)
def test_layer_table_adds_up(step):
    model = build_model(step.name)
    rows = layer_table(model)
    assert sum(r["params"] for r in rows) == step.params
    assert rows[-1]["output"] == (10, 1, 1)
    assert all(r["macs"] >= 0 for r in rows) and sum(r["macs"] for r in rows) > 0


@pytest.mark.parametrize("step", GAP_STEPS)
def test_receptive_field_covers_the_image(step):
    model = build_model(step.name)
    assert receptive_field(model) >= 28


@pytest.mark.parametrize("step", STEP_PARAMS)
def test_receptive_field_formula_matches_gradient_probe(step):
    model = build_model(step.name)
    assert receptive_field(model) == receptive_field_probe(model)


@pytest.mark.parametrize("layout, field", [
    (("conv3:4", "conv3:10"), 5),
    (("conv3:4", "pool", "conv3:10"), 8),
    (("conv5:4", "pool", "conv3p:4", "conv3:10"), 14),
])
def test_receptive_field_known_cases(layout, field):
    # Checked by hand: r += (k - 1) * jump, jump doubles at each pool.
    model = Net(layout)
    assert receptive_field(model) == field == receptive_field_probe(model)


@pytest.mark.parametrize("layout", [("conv3:8",), ("conv3:10", "pool"), ("conv3:8", "avgpool", "conv1:10"), ("dense:10",)])
def test_bad_layouts_are_rejected(layout):
    with pytest.raises(ValueError):
        parse_layout(layout)


def test_layout_that_does_not_reduce_to_1x1_says_so():
    with pytest.raises(ValueError, match="not 1x1"):
        Net(("conv3:8", "conv3:10"))(torch.zeros(1, 1, 28, 28))


@pytest.mark.parametrize("token", ["sep3:40", "sep3p:14", "tied3p:16"])
def test_a_layout_token_removed_from_the_engine_is_refused_by_name(token):
    # Issue 28 removed the depthwise-separable and tied blocks; committed screen records still name them.
    with pytest.raises(ValueError, match=f"bad layout token '{token}': expected convK:C, convKp:C, pool or gap"):
        parse_layout(("conv3:8", token, "gap", "conv1:10"))


@given(k=st.integers(min_value=2, max_value=4), batch=st.integers(min_value=1, max_value=5))
def test_stacked_seeds_compute_each_seed_exactly(k, batch):
    layout = STEPS["5-lr-schedule"].layout
    singles = []
    for i in range(k):
        torch.manual_seed(i)  # distinct weights per seed, so a mixed-up slice would show
        singles.append(Net(layout, dropout=0.1).eval())
    stacked = stack_seeds(singles).eval()
    x = torch.randn(batch, k, 28, 28)
    with torch.no_grad():
        together = stacked(x)
        alone = torch.stack([m(x[:, i:i + 1]) for i, m in enumerate(singles)], dim=1)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    for single, state in zip(singles, unstack_seeds(stacked)):
        for name, tensor in single.state_dict().items():
            assert torch.equal(tensor, state[name])


@given(dx=st.integers(min_value=-3, max_value=3), dy=st.integers(min_value=-3, max_value=3))
def test_a_test_time_shift_moves_every_pixel_and_fills_with_background(dx, dy):
    x = torch.randn(2, 3, 28, 28)
    moved = shift(x, dx, dy)
    for row, col in [(5, 7), (20, 13), (0, 0), (27, 27)]:
        src_row, src_col = row - dy, col - dx
        inside = 0 <= src_row < 28 and 0 <= src_col < 28
        expected = x[..., src_row, src_col] if inside else torch.full((2, 3), BACKGROUND)
        assert torch.equal(moved[..., row, col], expected)
    assert torch.equal(shift(moved, -dx, -dy)[..., 3:25, 3:25], x[..., 3:25, 3:25])


def test_test_time_shifts_change_evaluation_only():
    layout, views = STEPS["12-wide-end"].layout, ((1, 0), (-1, 0), (0, 1), (0, -1))
    torch.manual_seed(0)
    plain = Net(layout)
    torch.manual_seed(0)
    tta = Net(layout, shifts=views)
    assert count_parameters(tta) == count_parameters(plain)
    x = torch.randn(6, 1, 28, 28)
    assert torch.equal(tta.train()(x), plain.train()(x))  # training sees the images as they are
    with torch.no_grad():
        plain.eval(), tta.eval()
        probs = torch.stack([plain(v).softmax(-1) for v in [x] + [shift(x, *d) for d in views]]).mean(0)
        out = tta(x)
    torch.testing.assert_close(out, probs.log())
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(6))  # log-probabilities


def test_stacked_seeds_keep_their_test_time_shifts():
    layout, views = STEPS["12-wide-end"].layout, ((1, 0), (0, -1))
    singles = []
    for i in range(3):
        torch.manual_seed(i)
        singles.append(Net(layout, shifts=views).eval())
    stacked = stack_seeds(singles).eval()
    assert stacked.shifts == views
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(stacked(x), torch.stack([m(x[:, i:i + 1]) for i, m in enumerate(singles)], dim=1),
                                   rtol=1e-5, atol=1e-5)


def test_a_confident_mistake_gives_a_finite_loss_under_test_time_shifts():
    net = Net(("conv28:10",), shifts=((1, 0),)).eval()
    with torch.no_grad():
        net.features[0].weight.fill_(-1.0)
        net.features[0].weight[0] = 1.0  # logits thousands apart: a plain softmax underflows to exactly 0
        x = torch.ones(1, 1, 28, 28) * 3
        assert (net._logits(x).softmax(-1) == 0).any()
        out = net(x)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shifts", [((28, 0),), ((0, -30),), (1, 0), ((0.5, 0),), ((True, 0),), ((1, 2, 3),)],
                         ids=["too-far", "too-far-up", "not-pairs", "fraction", "bool", "triple"])
def test_a_test_time_shift_that_is_not_a_pair_of_whole_pixels_is_refused(shifts):
    with pytest.raises(ValueError, match="not a pair of whole pixels"):
        Net(STEPS["12-wide-end"].layout, shifts=shifts)
    with pytest.raises(ValueError, match="not a pair of whole pixels"):
        replace(STEPS["12-wide-end"], tta=shifts)


def test_a_test_time_rotation_turns_the_image_and_fills_the_corners_with_background():
    x = torch.randn(2, 3, 28, 28)
    torch.testing.assert_close(rotate(x, 0.0), x, rtol=0, atol=1e-4)  # float: x - BACKGROUND + BACKGROUND
    # A quarter turn maps pixel centres onto pixel centres: exactly rot90, counter-clockwise as in augment.py.
    torch.testing.assert_close(rotate(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)), rtol=0, atol=1e-4)
    blank = torch.full((1, 1, 28, 28), BACKGROUND)
    torch.testing.assert_close(rotate(blank, 5.0), blank, rtol=0, atol=1e-6)
    # On normalised images it is the normalised image of the raw image turned with zero (black) fill.
    raw = torch.rand(4, 1, 28, 28)
    turned_raw = rotate(raw + BACKGROUND, 7.0) - BACKGROUND  # x - BACKGROUND = raw: so this is raw turned
    torch.testing.assert_close(rotate(normalize(raw), 7.0), normalize(turned_raw), rtol=0, atol=1e-5)
    corner = rotate(normalize(torch.ones(1, 1, 28, 28)), 45.0)[0, 0, 0, 0]
    assert corner == pytest.approx(BACKGROUND, abs=1e-5)  # the far corner comes from outside: background


def test_test_time_rotations_are_more_views_of_the_same_average():
    layout, shifts, angles = STEPS["13-wide-end-6k"].layout, ((1, 0), (0, -1)), (5.0, -5.0)
    torch.manual_seed(0)
    plain = Net(layout)
    torch.manual_seed(0)
    tta = Net(layout, shifts=shifts, rotations=angles)
    x = torch.randn(6, 1, 28, 28)
    assert torch.equal(tta.train()(x), plain.train()(x))
    with torch.no_grad():
        plain.eval(), tta.eval()
        views = [x] + [shift(x, *d) for d in shifts] + [rotate(x, a) for a in angles]
        probs = torch.stack([plain(v).softmax(-1) for v in views]).mean(0)
        torch.testing.assert_close(tta(x), probs.log())
    assert stack_seeds([tta, tta]).rotations == angles


@pytest.mark.parametrize("angles", [(float("nan"),), (181.0,), (True,), ("5",), 5.0], ids=["nan", "too-far", "bool", "text", "not-a-tuple"])
def test_a_test_time_rotation_that_is_not_an_angle_is_refused(angles):
    with pytest.raises(ValueError, match="test-time rotation"):
        Net(STEPS["12-wide-end"].layout, rotations=angles)
    with pytest.raises(ValueError, match="test-time rotation"):
        replace(STEPS["12-wide-end"], tta_rotations=angles)


@pytest.mark.parametrize("kw", [dict(shifts=((0, 0),)), dict(shifts=((1, 0), (1, 0))), dict(rotations=(0.0,)),
                                dict(rotations=(5.0, 5.0))], ids=["shift-0", "shift-twice", "rotation-0", "rotation-twice"])
def test_a_view_that_repeats_the_image_or_another_view_is_refused(kw):
    with pytest.raises(ValueError, match="each view must be distinct"):
        Net(STEPS["12-wide-end"].layout, **kw)


def test_a_record_config_builds_the_network_its_step_builds():
    from ablation.engine.models import for_config
    from ablation.study.step import run_config

    step = STEPS["19-views-6k"]
    net = for_config(run_config(step))
    assert (net.layout, net.shifts, net.rotations) == (for_step(step).layout, step.tta, step.tta_rotations)
    config = run_config(STEPS["12-wide-end"])
    del config["tta"], config["tta_rotations"]  # a record made before the fields existed
    assert (for_config(config).shifts, for_config(config).rotations) == ((), ())


def test_global_average_pooling_is_an_adaptive_average_pool_and_computes_the_mean_bit_for_bit():
    """Issue 30: a grader's isinstance(m, nn.AdaptiveAvgPool2d) finds the final network's pooling; the numbers
    stay x.mean((2, 3)), what every record was trained with (the goldens pin the rest)."""
    from ablation.engine.models import GlobalAvgPool
    net = Net(STEPS[FINAL_STEP].layout)
    pools = [m for m in net.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
    assert len(pools) == 1 and isinstance(pools[0], GlobalAvgPool) and pools[0].output_size == 1
    x = torch.randn(3, 16, 5, 5).to(memory_format=torch.channels_last)
    assert torch.equal(pools[0](x), x.mean((2, 3), keepdim=True))
    assert not list(pools[0].parameters()) and not list(pools[0].buffers())  # nothing new in a state dict

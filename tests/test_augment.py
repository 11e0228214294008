"""Batched augmentation: invariants (Hypothesis) and agreement with torchvision, image by image."""
import pytest
import torch
import torchvision.transforms.functional as TF
from hypothesis import given, strategies as st
from torchvision.transforms import InterpolationMode

from ablation.engine.augment import Augment, apply, augment, sample_params

pytestmark = pytest.mark.fast

configs = st.builds(Augment, rotation=st.floats(0, 30), brightness=st.floats(0, 0.5), contrast=st.floats(0, 0.5))


def images(seed: int, n: int) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@given(cfg=configs, seed=st.integers(0, 2**31), n=st.integers(1, 16))
def test_shape_dtype_and_range_are_kept(cfg, seed, n):
    x = images(seed, n)
    y = augment(x, cfg, torch.Generator().manual_seed(seed))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1


@given(seed=st.integers(0, 2**31), n=st.integers(1, 16))
def test_zero_angle_and_no_jitter_is_the_identity(seed, n):
    x = images(seed, n)
    params = torch.zeros(n, 4)
    params[:, 1:3] = 1  # brightness and contrast factors of 1
    everything_on = Augment(rotation=7, brightness=0.2, contrast=0.2)
    torch.testing.assert_close(apply(x, params, everything_on), x, rtol=0, atol=1e-5)
    assert torch.equal(augment(x, Augment(), torch.Generator().manual_seed(seed)), x)


@given(cfg=configs, seed=st.integers(0, 2**31))
def test_same_generator_seed_gives_same_output(cfg, seed):
    x = images(0, 8)
    a = augment(x, cfg, torch.Generator().manual_seed(seed))
    b = augment(x, cfg, torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)


def test_different_seeds_give_different_output():
    x, cfg = images(0, 8), Augment(rotation=7, brightness=0.1, contrast=0.1)
    assert not torch.equal(augment(x, cfg, torch.Generator().manual_seed(1)), augment(x, cfg, torch.Generator().manual_seed(2)))


@given(cfg=configs, seed=st.integers(0, 2**31))
def test_parameters_stay_in_their_ranges(cfg, seed):
    p = sample_params(256, cfg, torch.Generator().manual_seed(seed), "cpu")
    assert p.shape == (256, 4) and (p[:, 0].abs() <= cfg.rotation).all()
    assert ((p[:, 1] - 1).abs() <= cfg.brightness + 1e-6).all() and ((p[:, 2] - 1).abs() <= cfg.contrast + 1e-6).all()
    assert ((p[:, 3] == 0) | (p[:, 3] == 1)).all()


@given(cfg=configs, seed=st.integers(0, 2**31), n=st.integers(1, 16))
def test_the_draws_are_the_six_every_record_was_made_with(cfg, seed, n):
    """The shift that issue 28 removed drew twice after the angle: those draws are still taken, so this batch's
    jitter and every later batch come from the stream the committed records (and the goldens) were made with."""
    ours, reference = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    p = sample_params(n, cfg, ours, "cpu")
    draws = [torch.rand(n, generator=reference) for _ in range(6)]  # angle, the two shifts, brightness, contrast, order
    assert torch.equal(p[:, 1], 1 + (draws[3] * 2 - 1) * cfg.brightness)
    assert torch.equal(p[:, 3], (draws[5] < 0.5).float())
    assert torch.equal(ours.get_state(), reference.get_state())


@pytest.mark.parametrize("angle", [-7.0, -2.5, 3.3, 7.0])
def test_rotation_matches_torchvision(angle):
    x = images(3, 1)
    params = torch.tensor([[angle, 1, 1, 0]])
    ours = apply(x, params, Augment(rotation=7))
    torch.testing.assert_close(ours[0], TF.rotate(x[0], angle, interpolation=InterpolationMode.NEAREST), rtol=0, atol=1e-5)


@pytest.mark.parametrize("brightness, contrast, contrast_first", [(0.9, 1.1, 0), (1.1, 0.8, 1), (0.95, 0.9, 1)])
def test_jitter_matches_torchvision(brightness, contrast, contrast_first):
    x = images(4, 1)
    params = torch.tensor([[0, brightness, contrast, contrast_first]], dtype=torch.float)
    ours = apply(x, params, Augment(brightness=0.2, contrast=0.2))[0]
    if contrast_first:
        ref = TF.adjust_brightness(TF.adjust_contrast(x[0], contrast), brightness)
    else:
        ref = TF.adjust_contrast(TF.adjust_brightness(x[0], brightness), contrast)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)

"""Batched augmentation: invariants (Hypothesis) and agreement with torchvision, image by image."""
import pytest
import torch
import torchvision.transforms.functional as TF
from hypothesis import given, strategies as st
from torchvision.transforms import InterpolationMode

from ablation.engine.augment import Augment, apply, augment, sample_params

pytestmark = pytest.mark.fast

configs = st.builds(Augment, rotation=st.floats(0, 30), translate=st.floats(0, 0.2),
                    brightness=st.floats(0, 0.5), contrast=st.floats(0, 0.5),
                    interpolation=st.sampled_from(["nearest", "bilinear"]), elastic=st.sampled_from([0.0, 0.5, 2.0]))


def images(seed: int, n: int) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@given(cfg=configs, seed=st.integers(0, 2**31), n=st.integers(1, 16))
def test_shape_dtype_and_range_are_kept(cfg, seed, n):
    x = images(seed, n)
    y = augment(x, cfg, torch.Generator().manual_seed(seed))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1


@given(seed=st.integers(0, 2**31), n=st.integers(1, 16), interpolation=st.sampled_from(["nearest", "bilinear"]))
def test_zero_angle_and_no_jitter_is_the_identity(seed, n, interpolation):
    x = images(seed, n)
    params = torch.zeros(n, 6 + 2 * 4 * 4)  # and no elastic displacement at any of the 4x4 points
    params[:, 3:5] = 1  # brightness and contrast factors of 1
    everything_on = Augment(rotation=7, translate=0.1, brightness=0.2, contrast=0.2, interpolation=interpolation,
                            elastic=2)
    # bilinear sampling on the identity grid is exact up to float32 rounding of the grid (~2e-6)
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
    assert (p[:, 0].abs() <= cfg.rotation).all() and (p[:, 1:3].abs() <= cfg.translate).all()
    assert ((p[:, 3] - 1).abs() <= cfg.brightness + 1e-6).all() and ((p[:, 4] - 1).abs() <= cfg.contrast + 1e-6).all()
    assert p.shape[1] == (6 + 2 * 4 * 4 if cfg.elastic else 6) and (p[:, 6:].abs() <= cfg.elastic).all()


@given(cfg=configs, seed=st.integers(0, 2**31))
def test_the_elastic_field_draws_after_the_six_so_other_streams_keep_their_numbers(cfg, seed):
    from dataclasses import replace

    draw = lambda c: sample_params(32, c, torch.Generator().manual_seed(seed), "cpu")
    assert torch.equal(draw(replace(cfg, elastic=2.0))[:, :6], draw(replace(cfg, elastic=0.0)))


@pytest.mark.parametrize("pixels", [1, 2, -3])
def test_a_uniform_elastic_field_shifts_the_image_by_that_many_pixels(pixels):
    x = images(5, 2)
    params = torch.zeros(2, 6 + 2 * 4 * 4)
    params[:, 3:5] = 1
    params[:, 6 + 16:] = pixels  # every point's y displacement; x stays
    moved = apply(x, params, Augment(elastic=3))
    if pixels > 0:  # the output row r samples the input row r + pixels
        assert torch.equal(moved[..., :-pixels, :], x[..., pixels:, :]) and not moved[..., -pixels:, :].any()
    else:
        assert torch.equal(moved[..., -pixels:, :], x[..., :pixels, :]) and not moved[..., :-pixels, :].any()


@pytest.mark.parametrize("interpolation", [InterpolationMode.NEAREST, InterpolationMode.BILINEAR])
@pytest.mark.parametrize("angle", [-7.0, -2.5, 3.3, 7.0])
def test_rotation_matches_torchvision(angle, interpolation):
    x = images(3, 1)
    params = torch.tensor([[angle, 0, 0, 1, 1, 0]])
    ours = apply(x, params, Augment(rotation=7, interpolation=interpolation.value))
    torch.testing.assert_close(ours[0], TF.rotate(x[0], angle, interpolation=interpolation), rtol=0, atol=1e-5)


@pytest.mark.parametrize("brightness, contrast, contrast_first", [(0.9, 1.1, 0), (1.1, 0.8, 1), (0.95, 0.9, 1)])
def test_jitter_matches_torchvision(brightness, contrast, contrast_first):
    x = images(4, 1)
    params = torch.tensor([[0, 0, 0, brightness, contrast, contrast_first]], dtype=torch.float)
    ours = apply(x, params, Augment(brightness=0.2, contrast=0.2))[0]
    if contrast_first:
        ref = TF.adjust_brightness(TF.adjust_contrast(x[0], contrast), brightness)
    else:
        ref = TF.adjust_contrast(TF.adjust_brightness(x[0], brightness), contrast)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3"])
def test_an_end_of_augmentation_that_is_not_a_whole_epoch_is_refused(bad):
    with pytest.raises(ValueError, match="until_epoch"):
        Augment(rotation=7, until_epoch=bad)


def test_augmentation_is_on_until_its_last_epoch_and_always_without_one():
    ends = Augment(rotation=7, until_epoch=3)
    assert [ends.on_in(e) for e in (1, 3, 4, 15)] == [True, True, False, False]
    assert all(Augment(rotation=7).on_in(e) for e in (1, 15))
    assert not Augment(until_epoch=3).on_in(1)  # nothing to switch on
    assert ends.describe() == "rot ±7° (epochs 1-3, clean after)" and Augment(rotation=7).describe() == "rot ±7°"


@pytest.mark.parametrize("augment", [Augment(rotation=7, until_epoch=15), Augment(rotation=7, until_epoch=20),
                                     Augment(until_epoch=3)], ids=["at-the-last-epoch", "past-it", "nothing-to-end"])
def test_an_end_of_augmentation_that_would_change_nothing_is_refused_by_the_step(augment):
    from dataclasses import replace

    from ablation.study.registry import STEPS

    with pytest.raises(ValueError, match="must be before the last epoch"):
        replace(STEPS["13-wide-end-6k"], augment=augment)

"""Comparisons against the goals' bars, at the resolution accuracies are measured in."""
import statistics

import pytest
import torch

from ablation.study.analysis import at_least, last_epochs_at_or_above

pytestmark = pytest.mark.fast


def test_a_mean_exactly_at_the_bar_meets_it_despite_float32_records():
    # Records store float32 percentages (99.24 % is 99.239998): exact means must not fall short by rounding.
    finals = [float(torch.tensor(v, dtype=torch.float32)) for v in (99.42, 99.45, 99.63)]
    assert statistics.fmean(finals) < 99.5 and at_least(statistics.fmean(finals), 99.5)
    assert not at_least(99.49, 99.5)  # one image in 10,000 below is a miss


def test_the_floor_is_judged_at_one_image_resolution():
    at_floor = [{"test_acc": float(torch.tensor(99.4 - 1e-5, dtype=torch.float32))}] * 5
    assert last_epochs_at_or_above(at_floor, 99.4, 5)
    assert not last_epochs_at_or_above(at_floor[:4] + [{"test_acc": 99.39}], 99.4, 5)

"""The predicted miss rate and the confirmation verdict, on known quantiles and hand-made records."""
import math

import pytest

from ablation.study.registry import FINAL_STEP, STEPS
from ablation.study.survival import clopper_pearson, confirmation, predicted_miss, step_prediction, t_cdf

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("x, df, p", [(0.0, 4, 0.5), (2.776, 4, 0.975), (-2.262, 9, 0.025), (12.706, 1, 0.975)])
def test_t_cdf_gives_the_tables_quantiles(x, df, p):
    assert t_cdf(x, df) == pytest.approx(p, abs=5e-4)


def test_clopper_pearson_matches_the_exact_interval():
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9))  # 0.3085
    low, high = clopper_pearson(2, 5)
    assert low == pytest.approx(0.0527, abs=1e-4) and high == pytest.approx(0.8534, abs=1e-4)
    assert clopper_pearson(5, 5)[1] == 1.0


def test_a_step_far_above_the_floor_predicts_few_misses_and_a_close_one_many():
    far, close = predicted_miss([99.8, 99.85, 99.9, 99.82, 99.88], 99.4), predicted_miss([99.41, 99.45, 99.43, 99.40, 99.44], 99.4)
    assert far["misses"] == close["misses"] == 0
    assert far["rate"] < 0.001 < 0.1 < close["rate"]
    assert close["all_fresh_hold"] == pytest.approx((1 - close["rate"]) ** 10)
    assert predicted_miss([99.3, 99.5], 99.4)["misses"] == 1
    assert math.isnan(predicted_miss([99.5], 99.4)["rate"])  # one seed has no spread to predict from


def record(seed: int, lowest: float, diverged: bool = False) -> dict:
    history = [{"epoch": e, "test_acc": 99.6} for e in range(1, 11)] + [{"epoch": 11, "test_acc": lowest}] + \
              [{"epoch": e, "test_acc": 99.6} for e in range(12, 16)]
    return {"seed": seed, "history": history, "diverged_at": 3 if diverged else None}


def test_the_confirmation_verdict_counts_the_fresh_seeds_apart_from_the_judged_ones():
    step = STEPS[FINAL_STEP]
    judged = [record(s, 99.45) for s in step.seeds]
    fresh = [record(100, 99.41), record(101, 99.39), record(102, 99.5, diverged=True)]
    verdict = confirmation(step, judged, fresh)
    assert verdict["held"] == [100] and verdict["missed"] == [101, 102]
    assert verdict["text"].startswith(f"held on {len(step.seeds)} of {len(step.seeds)} judged seeds (0–9); on the "
                                      "confirmation seeds (100–109), fixed before they ran: held on 1, missed on 2")
    assert "(7 of the 10 not run yet)" in verdict["text"]
    assert confirmation(STEPS["1-basic"], judged, fresh) is None


def test_a_diverged_judged_seed_counts_as_a_miss_in_the_prediction():
    step = STEPS[FINAL_STEP]
    prediction = step_prediction(step, [record(0, 99.5), record(1, 99.45, diverged=True), record(2, 99.48)])
    assert prediction["n"] == 3 and prediction["misses"] == 1

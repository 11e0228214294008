"""The learning rate of a step's Schedule at each iteration: the numbers behind the recipe."""
from __future__ import annotations

from ..study.step import Step


def learning_rate(step: Step, iteration: int, iters_per_epoch: int) -> float:
    """The lr of `step`'s schedule at a global iteration (0-based): StepLR steps per epoch, one-cycle per
    iteration. The report draws schedules with it; train.py steps the optimiser by it."""
    s = step.schedule
    epoch = iteration // iters_per_epoch
    if s.kind == "constant":
        return step.lr
    if s.kind == "step":
        return step.lr * s.gamma ** (epoch // s.step_epochs)
    if s.kind == "onecycle":
        total = (s.final_epoch or step.epochs) * iters_per_epoch
        rise = max(1, round(s.warmup * total))
        start, floor = step.lr / s.div, step.lr / s.final_div
        if iteration < rise:
            return start + (step.lr - start) * iteration / rise
        return max(floor, step.lr + (floor - step.lr) * (iteration - rise) / max(1, total - rise))
    raise ValueError(f"unknown schedule kind {s.kind!r}")

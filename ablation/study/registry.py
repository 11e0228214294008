"""The ablation as data: every step of the study is a frozen `Step` (step.py) made from its parent by `step()`.

`STEPS` is the ordered registry. A step is its recipe and its claim. The recipe (the run fields) is its
parent's with the fields in `changes` set, so the diff between two entries *is* the ablation (a fast test
checks that a step differs from its parent in exactly those fields). The claim (parameters, goals, seeds,
the seeds expected to miss) is the step's own and never inherited. Its words are in words/<name>.md: the
first seven steps are the seed study (../shared/seed/000_96d402abc32860bd.txt) with its Target, Result and
Analysis text as written, and Notes on where the text is silent or contradicts itself and what we chose.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass, replace

from .step import MAX_SEED, Augment, Goals, Schedule, SeedReport, Step

SEEDS = (0, 1, 2, 3, 4)  # every step is reported over these five
# Confirmation seeds of the final step and of the best ≤ 6,000-parameter step, fixed on 2026-11-29 before any
# was run; nothing is chosen on them.
CONFIRMATION_SEEDS = tuple(range(100, 110))
GOALS_8K = Goals(max_params=8_000, mean_final_floor=99.5)  # the steps beyond the mission: a smaller network
GOALS_6K = Goals(max_params=6_000, mean_final_floor=99.5)  # ... and the moonshot

# The seed's two non-GAP layouts could not be read off the text; this one is the step-3 network with
# its head swapped (last 3x3 to 12 channels, then a 6x6 convolution to 10 instead of GAP + 1x1), the
# closest layout we found to step 3 that gives exactly the 13,160 parameters the seed reports.
BASIC_LAYOUT = tuple("conv3:8 conv3:16 conv1:8 pool conv3:16 conv3:16 conv3:16 conv3p:12 conv6:10".split())
GAP_LAYOUT = tuple("conv3:8 conv3:16 conv1:8 pool conv3:16 conv3:16 conv3:16 conv3p:16 gap conv1:10".split())
# The image and its four one-pixel shifts (dx, dy): what step 18 averages over at evaluation.
SHIFTS_4 = ((1, 0), (-1, 0), (0, 1), (0, -1))


def step(parent: Step, name: str, *, params: int, goals: Goals = Goals(), seeds: tuple[int, ...] = SEEDS,
         floor_misses: tuple[int, ...] = (), confirmation_seeds: tuple[int, ...] = (),
         confirmation_misses: tuple[int, ...] = (), seed_report: SeedReport | None = None, **recipe) -> Step:
    """The step `name`: `parent`'s recipe with the fields of `recipe` changed (its `changes`, in that order)
    and its own claim, every part of which is given here or at its default, never taken from the parent."""
    return replace(parent, name=name, parent=parent.name, changes=tuple(recipe), params=params, goals=goals,
                   seeds=seeds, floor_misses=floor_misses, confirmation_seeds=confirmation_seeds,
                   confirmation_misses=confirmation_misses, seed_report=seed_report, **recipe)


_basic = Step(
    name="1-basic", parent=None, changes=(), layout=BASIC_LAYOUT, batchnorm=False, dropout=0.0, batch_size=128,
    lr=0.1, momentum=0.0, weight_decay=0.0, schedule=Schedule(), augment=Augment(),
    epochs=15, params=13_160, seeds=SEEDS, goals=Goals(), floor_misses=SEEDS,
    seed_report=SeedReport(params=13_160, best_train_acc=99.17, best_test_acc=99.18))

_bn_dropout = step(_basic, "2-bn-dropout", batchnorm=True, dropout=0.1, momentum=0.9,
    params=13_328, floor_misses=SEEDS,
    seed_report=SeedReport(params=13_160, best_train_acc=99.19, best_test_acc=99.29))

_gap = step(_bn_dropout, "3-gap", layout=GAP_LAYOUT,
    params=9_752, floor_misses=SEEDS,
    seed_report=SeedReport(params=9_752, best_train_acc=99.16, best_test_acc=99.35, epochs_run=20))

_gap_bs64 = step(_gap, "3b-gap-bs64", batch_size=64,
    params=9_752, floor_misses=SEEDS,
    seed_report=SeedReport(params=9_752, best_train_acc=99.28, best_test_acc=99.47, epoch=19, epochs_run=20))

_augment = step(_gap_bs64, "4-augment", augment=Augment(rotation=7.0, brightness=0.1, contrast=0.1),
    params=9_752, floor_misses=SEEDS,
    seed_report=SeedReport(params=9_752, best_train_acc=99.0, best_test_acc=99.45, epoch=17, epochs_run=20))

_augment_bs32 = step(_augment, "4b-augment-bs32", batch_size=32,
    params=9_752, floor_misses=SEEDS,
    seed_report=SeedReport(params=9_752, best_train_acc=98.94, best_test_acc=99.49, epoch=13, epochs_run=20))

_lr_schedule = step(_augment_bs32, "5-lr-schedule", lr=0.02, schedule=Schedule(kind="step", step_epochs=4, gamma=0.5),
    params=9_752, floor_misses=(0, 2, 3, 4),  # engine generation 2: seed 1 holds; under generation 1 all five missed
    seed_report=SeedReport(params=9_752, best_train_acc=99.16, best_test_acc=99.49, epoch=13, epochs_run=20))

SEED_STEPS = (_basic, _bn_dropout, _gap, _gap_bs64, _augment, _augment_bs32, _lr_schedule)

# --- beyond the seed ----------------------------------------------------------------------------
# Every choice below was made on a validation split (10,000 images held out of the training set,
# `run --holdout 10000`, records under reports/validation/); the test set is reported once, as it comes.

_bs128 = step(_lr_schedule, "6-bs128", batch_size=128, lr=0.08,
    params=9_752, floor_misses=SEEDS)  # engine generation 2; under generation 1 seed 3 held

_onecycle = step(_bs128, "7-onecycle", schedule=Schedule(kind="onecycle", warmup=0.25, final_epoch=10), lr=0.2,
    params=9_752, floor_misses=(0,))  # engine generation 2; under generation 1 all five held

_no_dropout = step(_onecycle, "8-no-dropout", dropout=0.0,
    params=9_752)

_narrow8k = step(
    _no_dropout, "9-narrow-8k",
    layout="conv3:8 conv3:12 conv1:8 pool conv3:12 conv3:12 conv3:16 conv3p:16 gap conv1:10".split(),
    params=7_536, goals=GOALS_8K, floor_misses=(0, 3))  # engine generation 2; under generation 1 all five held

_narrow6k = step(
    _narrow8k, "10-narrow-6k",
    layout="conv3:8 conv3:10 conv1:8 pool conv3:10 conv3:12 conv3:12 conv3p:14 gap conv1:10".split(),
    params=5_752, goals=GOALS_6K, floor_misses=(),  # engine generation 2; under generation 1: seed 2
    # The ≤ 6,000-parameter step whose judged seeds gave the lowest predicted chance that a new seed misses
    # the floor (the report's survival section); its confirmation seeds trained once each, from 6d12278, and once
    # more under engine generation 2.
    confirmation_seeds=CONFIRMATION_SEEDS,
    confirmation_misses=(103,))  # engine generation 2; under generation 1: 102, 103 and 108

_no_jitter = step(_narrow8k, "11-no-jitter", augment=Augment(rotation=7.0),
    params=7_536, goals=GOALS_8K, floor_misses=(0, 1))  # engine generation 2; under generation 1: seed 0

_wide_end = step(
    _narrow8k, "12-wide-end",
    layout="conv3:8 conv3:10 conv1:8 pool conv3:10 conv3:16 conv3:16 conv3p:16 gap conv1:10".split(),
    params=7_952, goals=GOALS_8K,
    # Seeds 5-9 were added when step 17, which passed on seeds 0-4, failed on 5-9: fixed before they were trained.
    seeds=tuple(range(10)),
    floor_misses=(7,))  # engine generation 2; under generation 1 the floor held on all ten

_wide_end6k = step(
    _wide_end, "13-wide-end-6k",
    layout="conv3:8 conv3:10 conv1:8 pool conv3:8 conv3:14 conv3:14 conv3p:12 gap conv1:10".split(),
    params=5_984, goals=GOALS_6K, floor_misses=(1, 3, 4))  # engine generation 2; under generation 1: 2, 3 and 4

_padded8k = step(
    _wide_end, "14-padded-8k",
    layout="conv3:8 conv3:10 conv1:8 pool conv3p:10 conv3p:16 conv3p:16 conv3p:16 gap conv1:10".split(),
    params=7_952, goals=GOALS_8K, floor_misses=(3,))  # engine generation 2; under generation 1: seeds 2 and 3

_weight_decay = step(
    _wide_end, "15-weight-decay", weight_decay=0.0005,
    schedule=Schedule(kind="onecycle", warmup=0.25, final_epoch=13),
    params=7_952, goals=GOALS_8K, floor_misses=SEEDS)

_weight_average = step(_weight_decay, "16-weight-average", ema=0.998,
    params=7_952, goals=GOALS_8K,
    # Seeds 5-9 were trained a session after 0-4, when steps 12, 17 and 18 already had ten.
    seeds=tuple(range(10)),
    floor_misses=(6, 7, 8))  # engine generation 2; under generation 1: seeds 1 and 6

_long_anneal = step(
    _wide_end, "17-average-long-anneal", schedule=Schedule(kind="onecycle", warmup=0.25, final_epoch=15), ema=0.998,
    params=7_952, goals=GOALS_8K, seeds=tuple(range(10)),
    floor_misses=(6,))  # engine generation 2; under generation 1: seeds 5 and 7

_shifted_views = step(_wide_end, "18-shifted-views", tta=SHIFTS_4,
    params=7_952, goals=GOALS_8K, seeds=tuple(range(10)), confirmation_seeds=CONFIRMATION_SEEDS)

_views6k = step(_wide_end6k, "19-views-6k", tta=SHIFTS_4, tta_rotations=(5.0, -5.0),
    params=5_984, goals=GOALS_6K)  # engine generation 2 holds the floor on all five; under generation 1 2 and 3 missed

BEYOND_STEPS = (_bs128, _onecycle, _no_dropout, _narrow8k, _narrow6k, _no_jitter, _wide_end, _wide_end6k, _padded8k,
                _weight_decay, _weight_average, _long_anneal, _shifted_views, _views6k)

STEPS: dict[str, Step] = {s.name: s for s in SEED_STEPS + BEYOND_STEPS}
# The step the mission's verdict is judged on (and `--steps final`): the last of the ≤ 8,000-parameter line,
# which met every goal. Step 19, a ≤ 6,000-parameter attempt, is not it unless it meets the mission too.
FINAL_STEP = "18-shifted-views"


def with_overrides(step: Step, assignments: list[str]) -> Step:
    """A variant of `step` with fields set from 'field=value' strings ('schedule.final_epoch=12' for nested).

    The variant is named after them ('7-onecycle[lr=0.1]'), so its records never mix with the step's; the
    name is text, never a path (records.py files it under a folder name of its own). Every value is checked
    by the dataclasses; a ValueError names the first that is refused.
    """
    import ast

    if not assignments:
        return step
    for text in assignments:
        key, sep, raw = text.partition("=")
        if not sep:
            raise ValueError(f"override {text!r} is not field=value")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            value = raw  # a bare word such as onecycle: the field's check judges it as text
        head, _, sub = key.partition(".")
        if head not in {f.name for f in fields(Step)} or head in {"name", "parent", "changes"}:
            raise ValueError(f"override {text!r}: {head!r} is not a step field")
        if sub:
            inner = getattr(step, head)
            if not is_dataclass(inner) or sub not in {f.name for f in fields(inner)}:
                raise ValueError(f"override {text!r}: {type(inner).__name__} has no field {sub!r}")
            value = replace(inner, **{sub: value})
        step = replace(step, **{head: value})
    return replace(step, name=f"{step.name}[{','.join(assignments)}]")


def get_step(name: str) -> Step:
    """The step called `name`; "final" names FINAL_STEP."""
    try:
        return STEPS[FINAL_STEP if name == "final" else name]
    except KeyError:
        raise KeyError(f"unknown step {name!r}; known steps: {', '.join(STEPS)}") from None


# Seeds in one selection: more is a typo, not a study.
MAX_SEEDS = 1_000


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,2,7' -> [0, 2, 7]; '3' -> [3]."""
    seeds: list[int] = []
    malformed = ValueError(f"malformed seeds {text!r}: use a range like 0-4 or a list like 0,2,7 of distinct whole "
                           f"numbers from 0 to {MAX_SEED:,}, at most {MAX_SEEDS:,}")
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not (lo.isdigit() and lo.isascii() and (not dash or hi.isdigit() and hi.isascii())):
            raise malformed from None  # '0-', '-3', '1e3', '' or '٣' (isdigit alone takes other scripts' digits)
        if len(lo) > 10 or len(hi) > 10:
            raise malformed
        first, last = int(lo), int(hi) if dash else int(lo)
        if not first <= last <= MAX_SEED or len(seeds) + last - first + 1 > MAX_SEEDS:
            raise malformed  # checked before the range is made: 0-99999999999 would fill the memory
        seeds += range(first, last + 1)
    if len(set(seeds)) != len(seeds):
        raise malformed
    return seeds


def parse_steps(text: str) -> list[Step]:
    """'all', or step names separated by commas ('final' names FINAL_STEP), each step once."""
    if text == "all":
        return list(STEPS.values())
    try:
        steps = [get_step(name.strip()) for name in text.split(",")]
    except KeyError as e:
        raise ValueError(f"{e.args[0]}; or 'final' (the step the mission is judged on, {FINAL_STEP}), "
                         f"or 'all'") from None
    return list({step.name: step for step in steps}.values())  # a step named twice trains once

"""Search spaces as data: what `python -m ablation search STEP` may change in a step, and the split it searches on.

A space is a tuple of `Dimension`s, each a named Step field path ('lr', 'schedule.final_epoch',
'augment.rotation', or 'layout[4]': the width of the layout's token 4) with its kind and range. A trial's
values become `registry.with_overrides` assignments, so a trial IS a registry variant, with its own name and
records folder, as `run --set` and `screen --set` make them.

The split, fixed here before any search runs:
- a search trains on the training set less SEARCH_FOLD's 10,000 held-out images and is scored on those
  (as `run --holdout 10000 --fold 0`), with SEARCH_SEEDS, seeds no other part of the study uses (the study's
  and its held-out runs' are 0-9, the confirmation seeds 100-109): the test set is never read;
- the screen that decides whether a found recipe becomes a step (`python -m ablation screen STEP --set ...`)
  runs its own seed 0 over folds 0-5, so the search's choice is judged on seeds it did not select on and on
  five folds of six it never saw (`--folds 1-5 --seeds 0,1` keeps the screen off fold 0 altogether).

Nothing here imports torch or the tuner: runs/search.py asks Optuna for the values (`suggest`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields

from .analysis import lowest_of_last
from .layout import parse_layout
from .step import Goals, Step, check, is_real

SEARCH_FOLD = 0  # the held-out block of the training set a search is scored on
SEARCH_HOLDOUT = 10_000  # images in it (the default of --holdout)
SEARCH_SEEDS = (200, 201)  # every trial trains these, in one pass; no other part of the study uses them
LAST_EPOCHS = Goals().last_epochs  # the mission's window: a trial is scored on its lowest epoch in it

KINDS = ("log", "float", "int", "choice")  # log: a float drawn log-uniformly; choice: one of `choices`
_WIDTH = re.compile(r"layout\[(\d+)\]$")


@dataclass(frozen=True)
class Dimension:
    field: str  # a Step field path: 'lr', 'schedule.final_epoch', or 'layout[K]', the output width of token K
    kind: str  # one of KINDS
    low: float = 0.0  # log, float, int: the smallest value, included
    high: float = 0.0  # ... and the largest, included
    choices: tuple = ()  # choice: the values, in order

    def __post_init__(self):
        check(self.kind in KINDS, "kind", self.kind, f"one of {', '.join(KINDS)}")
        if self.kind == "choice":
            check(isinstance(self.choices, tuple) and len(self.choices) >= 2, f"{self.field} choices", self.choices,
                  "a tuple of at least two values")
        else:
            check(is_real(self.low) and is_real(self.high) and self.low < self.high and (self.kind != "log" or self.low > 0),
                  f"{self.field} range", (self.low, self.high), "low < high (and low > 0 for a log-uniform range)")

    @property
    def width_of(self) -> int | None:
        """K for 'layout[K]', else None."""
        return int(m[1]) if (m := _WIDTH.match(self.field)) else None


@dataclass(frozen=True)
class Space:
    name: str
    about: str  # one line: what the space is for
    dimensions: tuple[Dimension, ...]
    steps: tuple[str, ...] = ()  # the steps it is the default space of (`search STEP` without --space)

    def check(self, step: Step) -> None:
        """ValueError unless every dimension names a field of `step` (and a width, a convolution of its layout)."""
        layers = parse_layout(step.layout)
        for d in self.dimensions:
            if (k := d.width_of) is not None:
                if not (k < len(layers) - 1 and layers[k].kind == "conv"):  # the last convolution is the 10 classes
                    raise ValueError(f"space {self.name}: {d.field} is not a convolution of {step.name}'s layout "
                                     f"(its tokens: {', '.join(f'{i}:{t}' for i, t in enumerate(step.layout))})")
                continue
            head, _, sub = d.field.partition(".")
            inner = getattr(step, head, None)
            names = {f.name for f in fields(inner)} if sub and hasattr(inner, "__dataclass_fields__") else set()
            if head not in {f.name for f in fields(Step)} or (sub and sub not in names):
                raise ValueError(f"space {self.name}: {d.field!r} is not a field of {step.name}")


def suggest(trial, space: Space) -> dict:
    """The trial's values, one per dimension, asked of the tuner (an Optuna trial's suggest_* calls)."""
    values = {}
    for d in space.dimensions:
        if d.kind == "choice":
            values[d.field] = trial.suggest_categorical(d.field, list(d.choices))
        elif d.kind == "int":
            values[d.field] = trial.suggest_int(d.field, int(d.low), int(d.high))
        else:
            values[d.field] = trial.suggest_float(d.field, d.low, d.high, log=d.kind == "log")
    return values


def registered_values(step: Step, space: Space) -> dict | None:
    """The step's own value of each of the space's dimensions: its recipe as a trial, which a search trains first
    (runs/search.py), so that what it finds is read against the step trained and scored the same way. None when
    one of the values lies outside its dimension."""
    values, layers = {}, parse_layout(step.layout)
    for d in space.dimensions:
        if (k := d.width_of) is not None:
            value = layers[k].out_channels
        else:
            head, _, sub = d.field.partition(".")
            value = getattr(getattr(step, head), sub) if sub else getattr(step, head)
        if not (value in d.choices if d.kind == "choice" else d.low <= value <= d.high):
            return None
        values[d.field] = value
    return values


def rounded(value):
    """A drawn float to three significant digits: what is trained, and what names the variant ('lr=0.0512'), so
    a name stays readable and two draws that round alike are one variant, trained once."""
    return float(f"{value:.3g}") if isinstance(value, float) else value


def assignments(step: Step, values: dict) -> tuple[list[str], list[str]]:
    """(the with_overrides assignments of a trial's values, the same as short 'field=value' texts to show).

    The widths of the layout (layout[K]) become one `layout=(...)` assignment: the step's tokens with those
    widths set."""
    shown, overrides, layout = [], [], list(step.layout)
    for field, value in values.items():
        value = rounded(value)
        shown.append(f"{field}={value!r}")
        if (m := _WIDTH.match(field)) is not None:
            kind, _, _ = layout[int(m[1])].partition(":")
            layout[int(m[1])] = f"{kind}:{value}"
        else:
            overrides.append(f"{field}={value!r}")
    if tuple(layout) != step.layout:
        overrides.append(f"layout={tuple(layout)!r}")
    return overrides, shown


def objective(histories: list[list[dict]], diverged: bool = False) -> float:
    """What a search maximises, the mission's criterion on held-out data: the lowest accuracy of the last
    LAST_EPOCHS epochs, over the search seeds (the worst seed's worst judged epoch). A diverged seed scores 0."""
    if diverged or not histories or not all(histories):
        return 0.0
    return min(lowest_of_last(h, LAST_EPOCHS) for h in histories)


# --- the spaces -------------------------------------------------------------------------------------------

# The recipe's knobs around the one-cycle recipe of steps 7-19 (peak lr 0.2, warm-up 25 %, annealed by epoch
# 10 of 15, batch 128, rotation ±7°, no weight decay, no average): the ranges bracket what the screens tried.
_RECIPE = (
    Dimension("lr", "log", 0.05, 0.5),
    Dimension("schedule.final_epoch", "int", 10, 15),  # the epoch the one-cycle anneal ends (of 15)
    Dimension("batch_size", "choice", choices=(64, 128, 256)),
    Dimension("augment.rotation", "float", 0.0, 12.0),  # degrees
    Dimension("weight_decay", "choice", choices=(0.0, 0.0001, 0.0003, 0.0005)),
    Dimension("ema", "choice", choices=(0.0, 0.99, 0.995, 0.998)),
)

SPACES: dict[str, Space] = {s.name: s for s in (
    Space("6k", "a ≤ 6,000-parameter recipe: the recipe's knobs and the widths of the four 3x3 convolutions after "
                "the pool (about half of these layouts fit the budget)",
          _RECIPE + tuple(Dimension(f"layout[{k}]", "choice", choices=widths) for k, widths in
                          ((4, (8, 10, 12)), (5, (10, 12, 14, 16)), (6, (10, 12, 14, 16)), (7, (10, 12, 14, 16)))),
          steps=("13-wide-end-6k", "10-narrow-6k", "19-views-6k")),
    Space("8k", "a ≤ 8,000-parameter recipe with a wider margin: the recipe's knobs and the widths of the four 3x3 "
                "convolutions after the pool (about three quarters of these layouts fit)",
          _RECIPE + tuple(Dimension(f"layout[{k}]", "choice", choices=widths) for k, widths in
                          ((4, (8, 10, 12)), (5, (12, 14, 16, 18)), (6, (12, 14, 16, 18)), (7, (12, 14, 16, 18)))),
          steps=("12-wide-end", "9-narrow-8k", "18-shifted-views")),
    Space("lr", "a learning rate alone: the smallest space, for smoke runs and tests",
          (Dimension("lr", "log", 0.05, 0.5),)),
)}


def space_for(step: Step, name: str | None = None) -> Space:
    """The space `name`, or the step's default space; ValueError naming the spaces when there is none."""
    known = ", ".join(f"{s.name} ({s.about.split(':')[0]})" for s in SPACES.values())
    if name is None:
        found = [s for s in SPACES.values() if step.name in s.steps]
        if not found:
            raise ValueError(f"no search space is declared for {step.name}: give --space, one of {known}")
        space = found[0]
    elif name not in SPACES:
        raise ValueError(f"unknown space {name!r}; the spaces: {known}")
    else:
        space = SPACES[name]
    space.check(step)
    return space

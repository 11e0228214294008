"""What a step is: a frozen `Step` and its parts (Schedule, Augment, Goals, ...), each field checked where it
is made. The registry of the study's steps is registry.py.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from functools import lru_cache
from pathlib import Path

from .layout import parse_layout, test_time_rotations, test_time_shifts

MISSION = "≥ 99.4 % test accuracy in each of the last 5 epochs, within 15 epochs, with < 10,000 parameters, on every seed"

# Bounds of the whole-number fields: wide enough for any real study, narrow enough that a typo is refused
# before it allocates a range or overflows a generator's seed (train.generator multiplies it by ~10^6).
MAX_EPOCHS = 10_000
MAX_BATCH = 60_000  # the training set
MAX_SEED = 2**31 - 1


# Every field is checked where its dataclass is made, so a registry entry, a --set variant, a record's
# config and a pool worker's copy are refused alike, with one line naming the field, the value and what
# is allowed, before anything trains.
def check(ok: bool, field: str, value, allowed: str) -> None:
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:60] + "..." + shown[-10:]  # a pasted essay stays one line's worth
        raise ValueError(f"{field}={shown} is not allowed: {allowed}")


def is_real(x) -> bool:
    """A finite int or float (not a bool, nan, inf, or an int too large for a float)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def is_whole(x, low: int, high: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and low <= x <= high


def in_range(x, low: float, high: float, *, high_open: bool = False) -> bool:
    return is_real(x) and low <= x and (x < high if high_open else x <= high)


def is_text(x, none: bool = False) -> bool:
    return isinstance(x, str) or (none and x is None)


def is_seed_tuple(x, *, empty: bool) -> bool:
    return (isinstance(x, tuple) and (empty or bool(x)) and len(set(x)) == len(x)
            and all(is_whole(s, 0, MAX_SEED) for s in x))


def as_tuple(x):
    """A list (from --set or a record's JSON) as a tuple, so a step stays hashable and compares equal."""
    return tuple(x) if isinstance(x, list) else x


SCHEDULE_KINDS = ("constant", "step", "onecycle")


@dataclass(frozen=True)
class Augment:
    rotation: float = 0.0  # degrees; angle ~ U[-rotation, +rotation], nearest-neighbour (RandomRotation's default)
    brightness: float = 0.0  # β: factor ~ U[1-β, 1+β]
    contrast: float = 0.0  # γ: factor ~ U[1-γ, 1+γ]

    def __post_init__(self):
        check(in_range(self.rotation, 0, 180), "augment.rotation", self.rotation, "degrees in [0, 180]")
        for name in ("brightness", "contrast"):
            check(in_range(getattr(self, name), 0, 1), f"augment.{name}", getattr(self, name), "a factor's half-width in [0, 1]")

    @property
    def active(self) -> bool:
        return any((self.rotation, self.brightness, self.contrast))

    def describe(self) -> str:
        parts = [f"rot ±{self.rotation:g}°" if self.rotation else "",
                 f"bright ±{self.brightness:g}" if self.brightness else "",
                 f"contrast ±{self.contrast:g}" if self.contrast else ""]
        return ", ".join(p for p in parts if p) or "none"


@dataclass(frozen=True)
class Schedule:
    kind: str = "constant"  # "constant", "step" (StepLR) or "onecycle"
    step_epochs: int = 0  # step: multiply the lr by gamma every step_epochs epochs
    gamma: float = 1.0  # step: the factor
    warmup: float = 0.0  # onecycle: fraction of all iterations spent rising linearly to the peak lr
    final_epoch: int = 0  # onecycle: the lr reaches its floor here (0 = the last epoch) and stays
    div: float = 25.0  # onecycle: start lr = peak / div
    final_div: float = 1e4  # onecycle: floor lr = peak / final_div

    def __post_init__(self):
        check(self.kind in SCHEDULE_KINDS, "schedule.kind", self.kind, f"one of {', '.join(map(repr, SCHEDULE_KINDS))}")
        check(is_whole(self.step_epochs, 1 if self.kind == "step" else 0, MAX_EPOCHS), "schedule.step_epochs",
              self.step_epochs, f"a whole number of epochs up to {MAX_EPOCHS:,}, at least 1 for kind 'step'")
        check(is_real(self.gamma) and self.gamma > 0, "schedule.gamma", self.gamma, "a finite factor > 0")
        check(in_range(self.warmup, 0, 1), "schedule.warmup", self.warmup, "a fraction in [0, 1]")
        check(is_whole(self.final_epoch, 0, MAX_EPOCHS), "schedule.final_epoch", self.final_epoch,
              f"a whole epoch from 0 (the last) to {MAX_EPOCHS:,}")
        for name in ("div", "final_div"):
            value = getattr(self, name)
            check(is_real(value) and value > 0, f"schedule.{name}", value, "a finite divisor > 0")

    def describe(self) -> str:
        if self.kind == "step":
            return f"StepLR({self.step_epochs}, {self.gamma:g})"
        if self.kind == "onecycle":
            end = f", ends ep {self.final_epoch}" if self.final_epoch else ""
            return f"one-cycle (warm-up {self.warmup:.0%}{end})"
        return "constant"


@dataclass(frozen=True)
class Goals:
    max_params: int = 9_999  # parameters; the mission's "fewer than 10,000"
    accuracy_floor: float = 99.4  # percent test accuracy ...
    last_epochs: int = 5  # ... held in each of this many last epochs, on every seed
    max_epochs: int = 15  # epochs allowed
    mean_final_floor: float | None = None  # percent; mean over seeds of the final-epoch test accuracy

    def __post_init__(self):
        check(is_whole(self.max_params, 1, 10**9), "goals.max_params", self.max_params, "a whole number ≥ 1")
        check(in_range(self.accuracy_floor, 0, 100), "goals.accuracy_floor", self.accuracy_floor, "a percentage in [0, 100]")
        check(is_whole(self.last_epochs, 1, MAX_EPOCHS), "goals.last_epochs", self.last_epochs,
              f"a whole number of epochs from 1 to {MAX_EPOCHS:,}")
        check(is_whole(self.max_epochs, 1, MAX_EPOCHS), "goals.max_epochs", self.max_epochs,
              f"a whole number of epochs from 1 to {MAX_EPOCHS:,}")
        check(self.mean_final_floor is None or in_range(self.mean_final_floor, 0, 100), "goals.mean_final_floor",
              self.mean_final_floor, "None or a percentage in [0, 100]")

    def describe(self) -> str:
        text = (f"≤ {self.max_params:,} params, ≥ {self.accuracy_floor:g} % in each of the last {self.last_epochs}, "
                f"≤ {self.max_epochs} epochs")
        return text + (f", mean final ≥ {self.mean_final_floor:g} %" if self.mean_final_floor else "")


@dataclass(frozen=True)
class SeedReport:
    """What the seed study itself reported for the step (one run, best epoch, so not comparable 1:1)."""

    params: int
    best_train_acc: float  # percent
    best_test_acc: float  # percent
    epoch: int | None = None  # the epoch of the best test accuracy, when the seed gives it
    epochs_run: int | None = None  # how long the seed trained, when it can be told


# A step's words (its Target, Result, Analysis, Notes and, where it misses a goal, why) live in
# words/<name>.md beside the registry: prose is not configuration. The seed's steps quote the seed study's
# text as it is. tests/test_words.py checks against the records every figure of a known miss, and every
# parameter count and multiply-add figure in any step's words.
WORDS = Path(__file__).resolve().with_name("words")
# "Caveats": what a reader must know to weigh the step's verdict (how it was chosen, what it costs); the report
# puts the final step's beside the mission's verdict.
SECTIONS = {"Target": "target", "Result": "result", "Analysis": "analysis", "Notes": "notes", "Known miss": "known_miss",
            "Caveats": "caveats"}


def registered_name(name: str) -> str:
    """The step a --set variant was made from ('12-wide-end[lr=0.1]' -> '12-wide-end': registry.with_overrides
    names variants so); a step's own name for a step."""
    return name.partition("[")[0]


@lru_cache(maxsize=None)
def words(name: str) -> dict[str, str | None]:
    """{target, result, analysis, notes, known_miss} of the step called `name`, read from words/<name>.md;
    a paragraph's lines are joined by spaces. No file (a step made in a test): empty texts, no known miss."""
    out: dict[str, str | None] = {"target": "", "result": "", "analysis": "", "notes": "", "known_miss": None,
                                  "caveats": ""}
    path = WORDS / f"{name}.md"
    if Path(name).name != name or not path.is_file():
        return out
    section, lines = None, {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            if line[3:] not in SECTIONS:
                raise ValueError(f"{path}: unknown section {line!r}; the sections are {', '.join(SECTIONS)}")
            section = SECTIONS[line[3:]]
            lines[section] = []
        elif section and line.strip():
            lines[section].append(line.strip())
    return out | {key: " ".join(text) for key, text in lines.items()}


@dataclass(frozen=True, kw_only=True)
class Step:
    """A step of the study: its recipe, what its runs compute (a step takes its parent's and sets the fields in
    `changes`), and its claim, what is asserted of those runs (each step its own: registry.step never takes it
    from the parent). Its words are words/<name>.md (the properties below)."""

    name: str  # "<n>-<what>", the test id and the records folder
    parent: str | None  # the step this one changes
    changes: tuple[str, ...]  # the fields of the parent this step's target changes
    # --- the recipe
    layout: tuple[str, ...]  # the network, in layout.py's layout language
    batchnorm: bool  # BatchNorm after every 3x3 convolution
    dropout: float  # probability, after every 3x3 convolution block
    batch_size: int  # images per step
    lr: float  # peak learning rate
    momentum: float  # SGD's (every step trains with SGD)
    weight_decay: float  # L2 coefficient
    schedule: Schedule
    augment: Augment
    epochs: int  # epochs trained
    ema: float = 0.0  # decay per iteration of a moving average of the weights, which is evaluated and saved (0: off)
    tta: tuple[tuple[int, int], ...] = ()  # test-time shifts (dx, dy): evaluation averages the softmax over these views
    tta_rotations: tuple[float, ...] = ()  # test-time rotations (degrees): more views for the average, as tta
    # --- the claim
    params: int  # parameters of the model; a fast test checks it against the built network
    seeds: tuple[int, ...]  # the seeds its results are reported over
    goals: Goals
    seed_report: SeedReport | None = None  # the seed's own figures, for the side-by-side comparison
    floor_misses: tuple[int, ...] = ()  # seeds whose runs miss the accuracy floor, as measured (strict xfails)
    # Fresh seeds, fixed here before any of them ran and never looked at by a choice: trained once into
    # reports/confirmation and reported apart from `seeds`, on which the step was judged.
    confirmation_seeds: tuple[int, ...] = ()
    confirmation_misses: tuple[int, ...] = ()  # confirmation seeds whose runs miss the floor, as measured (strict xfails)

    def __post_init__(self):
        # `--set "tta=[[1,0]]"` gives lists: normalised here, so a step stays hashable, compares equal to
        # the same step written with tuples, and a bad shift is refused before anything trains
        for name in ("changes", "layout", "seeds", "floor_misses", "confirmation_seeds", "tta", "tta_rotations"):
            object.__setattr__(self, name, as_tuple(getattr(self, name)))
        self._check_claim()
        self._check_network()
        self._check_training()
        for name, kind in (("schedule", Schedule), ("augment", Augment), ("goals", Goals)):
            value = getattr(self, name)
            check(isinstance(value, kind), name, value, f"a {kind.__name__}; set one of its fields as {name}.FIELD=VALUE")
        for name in ("seeds", "floor_misses", "confirmation_seeds"):
            value = getattr(self, name)
            check(is_seed_tuple(value, empty=name != "seeds"), name, value,
                  f"a tuple of distinct whole seeds from 0 to {MAX_SEED:,}" + (", at least one" * (name == "seeds")))

    def _check_claim(self):
        check(is_text(self.name) and bool(self.name), "name", self.name, "a non-empty text")
        check(is_text(self.parent, none=True), "parent", self.parent, "a step's name or None")
        check(isinstance(self.changes, tuple) and all(is_text(c) for c in self.changes), "changes", self.changes,
              "a tuple of field names")
        check(self.seed_report is None or isinstance(self.seed_report, SeedReport), "seed_report", self.seed_report,
              "None or a SeedReport")
        check(is_whole(self.params, 0, 10**9), "params", self.params, "a whole number of parameters ≥ 0")

    def _check_network(self):
        check(isinstance(self.layout, tuple) and all(is_text(t) for t in self.layout), "layout", self.layout,
              "a tuple of layout tokens, e.g. ('conv3:8', 'pool', 'conv3:10', 'gap', 'conv1:10')")
        try:
            parse_layout(self.layout)
        except ValueError as e:
            raise ValueError(f"layout={self.layout!r} is not allowed: {e}") from None
        check(isinstance(self.batchnorm, bool), "batchnorm", self.batchnorm, "True or False")
        check(in_range(self.dropout, 0, 1, high_open=True), "dropout", self.dropout, "a probability in [0, 1)")
        check(isinstance(self.tta, tuple), "tta", self.tta, "a tuple of shifts (dx, dy), e.g. ((1, 0), (0, 1))")
        object.__setattr__(self, "tta", test_time_shifts(self.tta))
        object.__setattr__(self, "tta_rotations", test_time_rotations(self.tta_rotations))

    def _check_training(self):
        check(is_whole(self.batch_size, 1, MAX_BATCH), "batch_size", self.batch_size,
              f"a whole number of images from 1 to {MAX_BATCH:,}")
        check(is_real(self.lr) and self.lr > 0, "lr", self.lr, "a finite learning rate > 0")
        check(in_range(self.momentum, 0, 1, high_open=True), "momentum", self.momentum, "a number in [0, 1)")
        check(is_real(self.weight_decay) and self.weight_decay >= 0, "weight_decay", self.weight_decay,
              "a finite coefficient ≥ 0")
        check(is_whole(self.epochs, 1, MAX_EPOCHS), "epochs", self.epochs, f"a whole number from 1 to {MAX_EPOCHS:,}")
        check(in_range(self.ema, 0, 1, high_open=True), "ema", self.ema, "a decay in [0, 1) (0: off)")

    # The words of a variant made with --set ('12-wide-end[lr=0.1]') are its step's.
    words = property(lambda self: words(registered_name(self.name)))
    target = property(lambda self: self.words["target"])  # the seed's (or our) Target, as written
    # The seed's Result, as written; for our steps only what the records cannot say: the report writes the
    # measured part (report.measured_result), so no figure here can drift from the records.
    result = property(lambda self: self.words["result"])
    analysis = property(lambda self: self.words["analysis"])  # the seed's (or our) Analysis, as written
    notes = property(lambda self: self.words["notes"])  # what we decided where the text is silent or contradicts itself
    known_miss = property(lambda self: self.words["known_miss"])  # why a goal is missed (the strict xfails' reason)
    caveats = property(lambda self: self.words["caveats"])  # what weighs on its verdict: how chosen, what it costs
    views = property(lambda self: 1 + len(self.tta) + len(self.tta_rotations))  # forward passes per test image

    def describe_views(self) -> str:
        """'the image and 4 shifted copies': what a prediction averages over ('' for the image alone)."""
        copies = [f"{len(self.tta)} shifted" if self.tta else "",
                  f"{len(self.tta_rotations)} rotated ({', '.join(f'{a:+g}°' for a in self.tta_rotations)})"
                  if self.tta_rotations else ""]
        views = " and ".join(c for c in copies if c)
        return f"the image and {views} copies" if views else ""

    def describe_augment(self) -> str:
        return self.augment.describe() + (f"; evaluated over {views}" if (views := self.describe_views()) else "")

    def describe_lr(self) -> str:
        decay = f", weight decay {self.weight_decay:g}" if self.weight_decay else ""
        average = f", weights averaged (EMA {self.ema:g})" if self.ema else ""
        return f"sgd {self.lr:g}{decay}, {self.schedule.describe()}{average}"


# Fields that describe or judge a step but do not change what its run computes.
NON_RUN_FIELDS = frozenset({"name", "parent", "changes", "params", "seeds", "goals", "seed_report", "floor_misses",
                            "confirmation_seeds", "confirmation_misses"})


def config_diff(parent: Step, child: Step) -> dict[str, tuple]:
    """{field: (parent value, child value)} for the fields that define a run."""
    return {f.name: (getattr(parent, f.name), getattr(child, f.name))
            for f in fields(Step) if f.name not in NON_RUN_FIELDS and getattr(parent, f.name) != getattr(child, f.name)}


def _as_json(value):
    import json

    return json.loads(json.dumps(asdict(value) if is_dataclass(value) else value))


def run_config(step: Step) -> dict:
    """The fields that define a run, as they read in a record's JSON `config` (tuples as lists)."""
    return {k: v for k, v in _as_json(step).items() if k not in NON_RUN_FIELDS}


# A field added to Step after a record was made is absent from that record's config; the record was
# made with the field's default, which is what the engine does when a step leaves it at the default.
_DEFAULTS = {f.name: _as_json(f.default) for f in fields(Step) if f.default is not MISSING}

# Knobs removed from the engine (issue 28; reports/STUDY.md says what their screens found), each at the value
# with which it changed nothing. Records made before still carry them: at that value a record is a run of
# today's engine; at any other, one it can no longer make, which differs from every step in that field.
RETIRED = {"optimizer": "sgd", "distill": {"teacher": "", "weight": 0.0, "temperature": 1.0}, "label_smoothing": 0.0,
           "sam": 0.0, "augment.translate": 0.0, "augment.interpolation": "nearest", "augment.elastic": 0.0,
           "augment.until_epoch": 0}


@lru_cache(maxsize=None)
def _run_config_to_compare(step: Step) -> dict:
    # Read-only: the report and the screens compare every record they read against a few steps, and the
    # JSON round trip of run_config, once per record, was most of their time.
    return run_config(step)


@lru_cache(maxsize=None)
def _class_defaults(cls) -> dict:
    return _as_json(cls())


def _as_recorded(step: Step, key: str, config: dict):
    """A record's value of run field `key`, with what it lacks filled by the defaults: a field added to
    Step, or to one of its parts (e.g. Augment), after the record was made was made at its default."""
    if key not in config:
        return _DEFAULTS.get(key, MISSING)
    value, part = config[key], getattr(step, key)
    if not (is_dataclass(part) and isinstance(value, dict)):
        return value
    return {**_class_defaults(type(part)), **{k: v for k, v in value.items() if f"{key}.{k}" not in RETIRED}}


def _retired_in(config: dict) -> set[str]:
    """The run fields in which a record's `config` used a knob the engine no longer has (RETIRED)."""
    used = set()
    for path, idle in RETIRED.items():
        head, _, sub = path.partition(".")
        holder = config.get(head) if sub else config
        if isinstance(holder, dict) and holder.get(sub or head, idle) != idle:
            used.add(head)
    return used


def changed_run_fields(step: Step, config: dict) -> list[str]:
    """The run-defining fields in which a record's `config` differs from `step` (texts and goals may differ)."""
    changed = {k for k, v in _run_config_to_compare(step).items() if _as_recorded(step, k, config) != v}
    return sorted(changed | _retired_in(config))

"""How the report writes numbers and text: one place, fixed precision, so the same records give the same
bytes. The templates use these as filters (render.py registers them), and the views use them for the cells
they write out whole."""
from __future__ import annotations

import dataclasses
import difflib
import html
import math

from markupsafe import Markup


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def num(x, digits: int = 2) -> str:
    return "—" if missing(x) else f"{x:.{digits}f}"


def signed(x, digits: int = 2) -> str:
    # round first (+ 0.0 turns -0.0 into 0.0), so that -0.004 reads +0.00, not −0.00
    return "—" if missing(x) else f"{round(x, digits) + 0.0:+.{digits}f}".replace("-", "−")


def epoch(x) -> str:
    """An epoch number; a median of an even count of seeds can be a half."""
    return "—" if missing(x) else f"{x:g}"


def count(x) -> str:
    return "—" if missing(x) else f"{x:,}"


def sort_key(x) -> str:
    """The data-sort attribute the sorting script reads: the raw number; empty sorts last."""
    return "" if missing(x) else f"{x:.4f}"


def breakable(text: str) -> Markup:
    """Escaped text with a line-break opportunity after each comma, so a long layout wraps between tokens."""
    return Markup(html.escape(str(text), quote=False).replace(",", ",<wbr>"))


def describe_value(value) -> str:
    """A step's field as a "Changed from" line writes it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a part of a step: Schedule, Augment, Goals
        return value.describe()
    if isinstance(value, tuple):  # () is a field left empty: no test-time views, no seeds
        return " ".join(map(str, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe_change(field: str, old, new) -> str:
    """One field's change in the all-steps table, short: 'batch_size 128 → 64'; a layout by the tokens that
    changed ('layout conv3:16 conv3:16 → conv3:12 conv3:12'), as the whole layouts are too long to compare by
    eye; a part of a step (schedule, augmentation) or a tuple by its new value."""
    if isinstance(old, tuple) and isinstance(new, tuple) and all(isinstance(t, str) for t in old + new):
        parts = []
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
            if op != "equal":
                parts.append(" ".join(old[i1:i2]) + " → " + " ".join(new[j1:j2]) if i2 > i1 and j2 > j1 else
                             ("+ " + " ".join(new[j1:j2]) if j2 > j1 else "− " + " ".join(old[i1:i2])))
        return f"{field} " + "; ".join(parts)
    if dataclasses.is_dataclass(new) or isinstance(new, tuple):
        return f"{field} → {describe_value(new)}"
    return f"{field} {describe_value(old)} → {describe_value(new)}"


def signed_interval(ci: tuple[float, float]) -> str | None:
    """'[−0.12, +0.03]' for a paired difference's 95 % CI; None where one seed gives no interval."""
    lo, hi = ci
    return None if missing(lo) else f"[{signed(lo)}, {signed(hi)}]"

"""How the report writes numbers and text: one place, fixed precision, so the same records give the same
bytes. The templates use these as filters (render.py registers them), and the views use them for the cells
they write out whole."""
from __future__ import annotations

import dataclasses
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
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def signed_interval(ci: tuple[float, float]) -> str | None:
    """'[−0.12, +0.03]' for a paired difference's 95 % CI; None where one seed gives no interval."""
    lo, hi = ci
    return None if missing(lo) else f"[{signed(lo)}, {signed(hi)}]"

"""The report: reports/ablation.html (one self-contained file) and reports/ablation.md, from the run records.

The HTML answers "does the final step meet the mission, by how much, and what did each step change?": the
verdict first with its margin (in percent and in test images), one sortable table of all steps (each numeric
cell carries its raw number in data-sort), the ablation chart of what the mission judges (each seed's lowest
accuracy of the last epochs), a section per step whose prose folds away, the validation runs, the final
model's mistakes and the provenance of every number. Green and red mark the mission's goals only; a step's
stricter goals of its own are said in words. Charts are inline SVG drawn here and
digit images are PNGs written here, so the file opens from disk with no network and no plotting
library. Rendering is deterministic: the same records (and bench.json) give the same bytes, so a
report diff shows only what the records changed.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import os
import statistics
import struct
import zlib
from pathlib import Path

from markupsafe import Markup

from ..study.analysis import (DRAW, at_least, draws_meeting_goals, final_accuracies, holds_floor, lowest_of_last, meets_mission,
                       paired_delta, step_summary)
from ..study.screen import Rule, as_registered, pairs, verdict
from ..study.registry import FINAL_STEP, STEPS
from ..study.step import MISSION, Goals, Step, changed_run_fields, config_diff
from ..study.survival import FRESH, THIN, compare_implementations, confirmation, holding, set_ups, step_prediction

TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_OUT = {"html": Path("reports/ablation.html"), "md": Path("reports/ablation.md")}
OTHER_SETUPS = "other-setups"  # beside the records: a folder of records per other machine or float path
MISSION_GOALS = Goals()  # < 10,000 params, >= 99.4 % in each of the last 5 epochs, <= 15 epochs
MIN_STEPS = 5
ZOOM = (98.5, 99.7)  # percent: the default window of a zoomed chart
STRICTER_BAR = 99.5  # percent: the mean final accuracy the steps from 9 on ask of themselves, drawn for reference
MAX_MISTAKES_SHOWN = 60
# Ten seeds, ten colours; none is red or orange (the floor line, the train curve) or near-black (the mean, the
# test curve), so a seed line is never read as one of those.
SEED_COLORS = ("#1a73e8", "#12a4b4", "#9334e6", "#8c564b", "#2a9d3a", "#d6338a", "#b5a000", "#7f8c9a", "#0b3d91",
               "#a3c94a")
TRAIN_COLOR, TEST_COLOR, FLOOR_COLOR = "#e8710a", "#202124", "#d93025"
MET_COLOR, MISS_COLOR, SEED_STUDY_COLOR = "#137333", "#d93025", "#5f6368"


# --- formatting: one place, fixed precision, so numbers and bytes are stable ------------------------

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
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a part of a step: Schedule, Augment, Distill
        return value.describe()
    if isinstance(value, Goals):
        return value.describe()
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- SVG charts ------------------------------------------------------------------------------------

def _f(v: float) -> str:
    return f"{v:.1f}"


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k apart) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if raw <= m * mag * (1 + 1e-9))
    first = math.ceil(lo / step - 1e-9)
    return [round(k * step, 12) for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def nice_range(values: list[float], pad: float = 0.05) -> tuple[float, float]:
    values = [v for v in values if not missing(v)]
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    span = (hi - lo) or abs(hi) or 1.0
    ticks = nice_ticks(lo - span * pad, hi + span * pad)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else span
    return min(ticks[0], math.floor(lo / step) * step), max(ticks[-1], math.ceil(hi / step) * step)


def log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in ((1,) if math.log10(hi / lo) > 3 else (1, 2, 5)):
            t = m * 10.0 ** e
            if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9):
                ticks.append(t)
    return ticks


def tick_label(t: float) -> str:
    if t != 0 and (abs(t) < 1e-3 or abs(t) >= 1e5):
        return f"{t:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{t:.6g}"


@dataclasses.dataclass(frozen=True)
class Series:
    label: str | None
    points: tuple[tuple[float, float], ...]
    color: str
    width: float = 1.5
    dash: str | None = None
    dots: bool = False
    opacity: float = 1.0


@dataclasses.dataclass(frozen=True)
class Band:
    label: str
    points: tuple[tuple[float, float, float], ...]  # (x, lo, hi)
    color: str


def line_chart(title: str, series: list[Series], *, x_range: tuple[float, float], y_range: tuple[float, float],
               x_label: str = "epoch", y_label: str = "", x_ticks: list[float] | None = None,
               y_ticks: list[float] | None = None, bands: list[Band] = (), floor: float | None = None,
               shade_from: float | None = None, log_y: bool = False, width: int = 620, height: int = 260,
               marks: list[tuple[float, float, str]] = ()) -> str:
    """An inline SVG line chart. Values outside y_range are drawn on its edge with a triangle, so a
    zoomed chart never hides them and never lets them push the `floor` line off the picture; the floor
    line is drawn last, above every series, and then `marks`: (x, y, label) points ringed and labelled.
    Non-finite values break their line."""
    # (label, colour, dash, stroke width; 0 draws a dot, 8 a band swatch)
    legend = [(s.label, s.color, s.dash, s.width) for s in series if s.label] + [(b.label, b.color, None, 8) for b in bands]
    if floor is not None:
        legend.append((f"{floor:g} %", FLOOR_COLOR, "5 3", 1.5))
    if shade_from is not None:
        legend.append(("judged epochs", "#bdc1c6", None, 8))
    # The legend wraps into rows above the plot; its width is estimated at 6.1 px a character.
    rows, x = [[]], 0.0
    for item in legend:
        w = 32 + 6.1 * len(item[0])
        if x + w > width - 60 and rows[-1]:
            rows.append([])
            x = 0.0
        rows[-1].append((x, item))
        x += w
    left, right, top, bottom = 56, 14, 30 + 15 * len(rows), 36
    pw, ph = width - left - right, height - top - bottom
    y_lo, y_hi = y_range
    ty = (lambda v: math.log10(v)) if log_y else (lambda v: v)

    def X(v: float) -> float:
        return left + (v - x_range[0]) / ((x_range[1] - x_range[0]) or 1) * pw

    def Y(v: float) -> tuple[float, int]:
        """Pixel y of value v, and -1/0/+1 for clipped below / inside / clipped above."""
        edge = -1 if v < y_lo else (1 if v > y_hi else 0)
        v = min(max(v, y_lo), y_hi)
        return top + ph - (ty(v) - ty(y_lo)) / ((ty(y_hi) - ty(y_lo)) or 1) * ph, edge

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{_esc(title)}">', f'<title>{_esc(title)}</title>',
           f'<text class="title" x="{left}" y="16">{_esc(title)}</text>']
    for r, row in enumerate(rows):
        ly = 31 + 15 * r
        for lx, (label, color, dash, w) in row:
            x0 = left + lx
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            if w == 0:
                out.append(f'<circle cx="{_f(x0 + 9)}" cy="{ly - 4}" r="2.5" fill="{color}"/>')
            else:
                out.append(f'<line x1="{_f(x0)}" y1="{ly - 4}" x2="{_f(x0 + 18)}" y2="{ly - 4}" stroke="{color}" '
                           f'stroke-width="{min(w, 3) if w < 8 else 8}"{dash_attr} opacity="{0.35 if w >= 8 else 1}"/>')
            out.append(f'<text x="{_f(x0 + 22)}" y="{ly}">{_esc(label)}</text>')
    if shade_from is not None:
        out.append(f'<rect class="judged" x="{_f(X(shade_from))}" y="{top}" width="{_f(left + pw - X(shade_from))}" '
                   f'height="{ph}"/>')
    for t in y_ticks if y_ticks is not None else (log_ticks(y_lo, y_hi) if log_y else nice_ticks(y_lo, y_hi)):
        y = Y(t)[0]
        out.append(f'<line class="grid" x1="{left}" y1="{_f(y)}" x2="{left + pw}" y2="{_f(y)}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{_f(y + 4)}" text-anchor="end">{tick_label(t)}</text>')
    for t in x_ticks if x_ticks is not None else nice_ticks(*x_range):
        out.append(f'<line class="tickmark" x1="{_f(X(t))}" y1="{top + ph}" x2="{_f(X(t))}" y2="{top + ph + 4}"/>')
        out.append(f'<text class="tick" x="{_f(X(t))}" y="{top + ph + 16}" text-anchor="middle">{tick_label(t)}</text>')
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{pw}" height="{ph}"/>')
    out.append(f'<text class="axis" x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle">{_esc(x_label)}</text>')
    out.append(f'<text class="axis" transform="translate(13 {top + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{_esc(y_label)}</text>')
    for b in bands:
        pts = [(x, lo, hi) for x, lo, hi in b.points if not (missing(lo) or missing(hi))]
        if len(pts) > 1:
            upper = [f"{_f(X(x))},{_f(Y(hi)[0])}" for x, _, hi in pts]
            lower = [f"{_f(X(x))},{_f(Y(lo)[0])}" for x, lo, _ in reversed(pts)]
            out.append(f'<polygon points="{" ".join(upper + lower)}" fill="{b.color}" opacity="0.18"/>')
    for s in series:
        segments, current = [], []
        for x, y in s.points:
            if missing(y):
                segments, current = segments + [current], []
            else:
                current.append((X(x), *Y(y)))
        dash_attr = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        for seg in segments + [current]:
            if len(seg) > 1 and s.width > 0:
                out.append(f'<polyline points="{" ".join(f"{_f(px)},{_f(py)}" for px, py, _ in seg)}" fill="none" '
                           f'stroke="{s.color}" stroke-width="{s.width:g}" opacity="{s.opacity:g}"{dash_attr} '
                           f'stroke-linejoin="round"/>')
            for px, py, edge in seg:
                if edge:  # a triangle on the edge, pointing the way the value went
                    d = 5 * edge
                    out.append(f'<path d="M{_f(px - 4)},{_f(py + d)} L{_f(px + 4)},{_f(py + d)} L{_f(px)},{_f(py)} Z" '
                               f'fill="{s.color}" opacity="{s.opacity:g}"/>')
                elif s.dots or len(seg) == 1:
                    out.append(f'<circle cx="{_f(px)}" cy="{_f(py)}" r="2.5" fill="{s.color}" opacity="{s.opacity:g}"/>')
    if floor is not None:
        y = Y(floor)[0]
        out.append(f'<line x1="{left}" y1="{_f(y)}" x2="{left + pw}" y2="{_f(y)}" stroke="{FLOOR_COLOR}" '
                   f'stroke-width="1.5" stroke-dasharray="5 3"/>')
    for x, y, label in marks:
        px, (py, _) = X(x), Y(y)
        right = px > left + pw * 0.6
        out.append(f'<circle cx="{_f(px)}" cy="{_f(py)}" r="5.5" fill="none" stroke="#202124" stroke-width="1.5"/>')
        out.append(f'<text class="mark" x="{_f(px + (-9 if right else 9))}" y="{_f(py + (14 if py < top + ph - 20 else -8))}" '
                   f'text-anchor="{"end" if right else "start"}">{_esc(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def ablation_range(values: list[float], floor: float) -> tuple[float, float]:
    """The accuracy axis of the ablation chart: the data, cut at 0.6 % below the floor, so that a step far
    under it (drawn on the edge) does not squeeze the 0.1 % differences that decide the rest."""
    values = [v for v in values if not missing(v)] + [floor, STRICTER_BAR]
    lo = max(min(values), floor - 0.6)
    return math.floor(lo * 10 - 0.5) / 10, math.ceil(max(values) * 10 + 0.5) / 10


def ablation_chart(rows: list[dict]) -> str:
    """What the mission judges, per step: each seed's lowest test accuracy over the last epochs (green where it
    holds the floor, red where not), their mean, the seed study's one figure, beside the parameter count."""
    floor, last = MISSION_GOALS.accuracy_floor, MISSION_GOALS.last_epochs
    row_h, top, label_w, acc_w, gap, par_w = 24, 62, 150, 640, 40, 300
    width, height = label_w + acc_w + gap + par_w + 24, top + row_h * len(rows) + 34
    a0, p0 = label_w, label_w + acc_w + gap
    lo, hi = ablation_range([v for r in rows for _, v in r["lowests"]] + [r["seed_best"] for r in rows], floor)
    max_params = max([r["params"] or 0 for r in rows] + [10_000])
    p_ticks = nice_ticks(0, max_params, 4)
    p_hi = math.ceil(max_params / p_ticks[1]) * p_ticks[1]

    def AX(v: float) -> float:
        return a0 + (min(max(v, lo), hi) - lo) / (hi - lo) * acc_w

    def PX(v: float) -> float:
        return p0 + v / p_hi * par_w

    bottom = top + row_h * len(rows)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="lowest test accuracy of the last {last} epochs and parameters per step">',
           f"<title>Lowest test accuracy of the last {last} epochs, per seed, and parameters per step</title>",
           f'<text class="title" x="{a0}" y="16">Lowest test accuracy of the last {last} epochs, % (each seed, their mean)</text>',
           f'<text class="title" x="{p0}" y="16">Parameters</text>']
    legend = [("circle", MET_COLOR, f"seed holds ≥ {floor:g} %"), ("circle", MISS_COLOR, "seed below"),
              ("tick", "#202124", "mean"), ("diamond", SEED_STUDY_COLOR, "seed study (best epoch of one run)"),
              ("floor", FLOOR_COLOR, f"{floor:g} % (the mission)"), ("bar", "#9aa0a6", f"{STRICTER_BAR:g} % (steps 9 on, mean)")]
    x = a0
    for kind, color, label in legend:
        if kind == "circle":
            out.append(f'<circle cx="{_f(x + 4)}" cy="31" r="3.5" fill="{color}"/>')
        elif kind == "tick":
            out.append(f'<rect x="{_f(x + 2.5)}" y="25" width="3" height="12" fill="{color}"/>')
        elif kind == "diamond":
            out.append(f'<path d="M{_f(x + 4)},26 L{_f(x + 9)},31 L{_f(x + 4)},36 L{_f(x - 1)},31 Z" fill="#fff" '
                       f'stroke="{color}" stroke-width="1.5"/>')
        else:
            dash = "5 3" if kind == "floor" else "2 3"
            out.append(f'<line x1="{_f(x - 4)}" y1="31" x2="{_f(x + 12)}" y2="31" stroke="{color}" stroke-width="1.5" '
                       f'stroke-dasharray="{dash}"/>')
        out.append(f'<text x="{_f(x + 15)}" y="35">{_esc(label)}</text>')
        x += 30 + 6.1 * len(label)
    out.append(f'<text class="tick" x="{a0}" y="51">axis {lo:g}–{hi:g} %; a value below it is drawn on its left '
               f'edge as ◂ and written out</text>')
    out.extend(f'<rect x="{a0}" y="{top + row_h * i}" width="{acc_w}" height="{row_h}" fill="#f8f9fa"/>'
               for i in range(1, len(rows), 2))  # every other row shaded, under everything else
    for t in nice_ticks(lo, hi, 8):
        out.append(f'<line class="grid" x1="{_f(AX(t))}" y1="{top}" x2="{_f(AX(t))}" y2="{bottom}"/>')
        out.append(f'<text class="tick" x="{_f(AX(t))}" y="{bottom + 15}" text-anchor="middle">{tick_label(t)}</text>')
    for t in nice_ticks(0, p_hi, 4):
        out.append(f'<line class="grid" x1="{_f(PX(t))}" y1="{top}" x2="{_f(PX(t))}" y2="{bottom}"/>')
        out.append(f'<text class="tick" x="{_f(PX(t))}" y="{bottom + 15}" text-anchor="middle">{t:,.0f}</text>')
    out.append(f'<rect class="frame" x="{a0}" y="{top}" width="{acc_w}" height="{bottom - top}"/>')
    out.append(f'<rect class="frame" x="{p0}" y="{top}" width="{par_w}" height="{bottom - top}"/>')
    for bar, dash in ((floor, "5 3"), (STRICTER_BAR, "2 3")):
        color = FLOOR_COLOR if bar == floor else "#9aa0a6"
        out.append(f'<line x1="{_f(AX(bar))}" y1="{top}" x2="{_f(AX(bar))}" y2="{bottom}" stroke="{color}" '
                   f'stroke-width="1.5" stroke-dasharray="{dash}"/>')
    for i, r in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        out.append(f'<text x="{a0 - 8}" y="{_f(cy + 4)}" text-anchor="end">{_esc(r["name"])}</text>')
        if r["params"] is not None:
            over = r["params"] > r["max_params"]
            out.append(f'<rect x="{p0}" y="{_f(cy - 7)}" width="{_f(PX(r["params"]) - p0)}" height="14" '
                       f'class="{"bar over" if over else "bar"}"/>')
            # Inside the bar's end, where it cannot collide with the 10,000 line.
            out.append(f'<text x="{_f(PX(r["params"]) - 5)}" y="{_f(cy + 4)}" text-anchor="end">{r["params"]:,}</text>')
        if not missing(r["seed_best"]):
            sx = AX(r["seed_best"])
            out.append(f'<path d="M{_f(sx)},{_f(cy - 6)} L{_f(sx + 5)},{_f(cy)} L{_f(sx)},{_f(cy + 6)} L{_f(sx - 5)},{_f(cy)} Z" '
                       f'fill="#fff" stroke="{SEED_STUDY_COLOR}" stroke-width="1.5"><title>seed study: '
                       f'{r["seed_best"]:.2f} %</title></path>')
        if not r["lowests"]:
            out.append(f'<text class="tick" x="{a0 + 8}" y="{_f(cy + 4)}">no runs</text>')
            continue
        for seed, v in r["lowests"]:
            color = MET_COLOR if at_least(v, floor) else MISS_COLOR
            if v < lo:
                out.append(f'<path d="M{_f(a0 + 1)},{_f(cy)} L{_f(a0 + 7)},{_f(cy - 4)} L{_f(a0 + 7)},{_f(cy + 4)} Z" '
                           f'fill="{color}" opacity="0.8"><title>seed {seed}: {v:.2f} %</title></path>')
            else:
                out.append(f'<circle cx="{_f(AX(v))}" cy="{_f(cy)}" r="3.5" fill="{color}" opacity="0.75">'
                           f'<title>seed {seed}: {v:.2f} %</title></circle>')
        mean = statistics.fmean(v for _, v in r["lowests"])
        out.append(f'<rect x="{_f(AX(mean) - 1.5)}" y="{_f(cy - 8)}" width="3" height="16" fill="#202124">'
                   f'<title>mean {mean:.2f} %</title></rect>')
        low = min(v for _, v in r["lowests"])
        if low < lo:  # off the axis: say where
            out.append(f'<text class="tick" x="{a0 + 12}" y="{_f(cy + 4)}">lowest {low:.2f} %, mean {mean:.2f} %</text>')
    out.append(f'<line x1="{_f(PX(MISSION_GOALS.max_params + 1))}" y1="{top}" x2="{_f(PX(MISSION_GOALS.max_params + 1))}" '
               f'y2="{bottom}" stroke="{FLOOR_COLOR}" stroke-width="1.5" stroke-dasharray="5 3"/>')
    out.append(f'<text class="tick" x="{_f(PX(MISSION_GOALS.max_params + 1))}" y="{top - 4}" text-anchor="middle">'
               f'{MISSION_GOALS.max_params + 1:,}</text>')
    out.append("</svg>")
    return "\n".join(out)


# --- per-step numbers ------------------------------------------------------------------------------

def _mean_std_by_epoch(records: list[dict], key: str) -> list[tuple[int, float, float]]:
    epochs = sorted({row["epoch"] for r in records for row in r["history"]})
    out = []
    for e in epochs:
        values = [row[key] for r in records for row in r["history"] if row["epoch"] == e and not missing(row[key])]
        if values:
            out.append((e, statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan))
    return out


def _epoch_ticks(epochs: int) -> list[float]:
    return list(range(1, epochs + 1)) if epochs <= 16 else [1] + nice_ticks(0, epochs, 6)[1:]


def step_charts(step: Step, records: list[dict]) -> list[str]:
    epochs = max([step.epochs] + [len(r["history"]) for r in records])
    x_range, x_ticks = (1, max(epochs, 2)), _epoch_ticks(epochs)
    judged = step.epochs - step.goals.last_epochs + 0.5 if step.epochs > step.goals.last_epochs else None
    charts = []
    if records:
        seeds = [Series(f"seed {r['seed']}" + (f" (diverged at {r['diverged_at']})" if r["diverged_at"] else ""),
                        tuple((row["epoch"], row["test_acc"]) for row in r["history"]),
                        SEED_COLORS[i % len(SEED_COLORS)], width=1.4, opacity=0.85)
                 for i, r in enumerate(records)]
        stats = _mean_std_by_epoch(records, "test_acc")
        mean = Series("mean", tuple((e, m) for e, m, _ in stats), "#202124", width=2.2)
        band = [Band("mean ± sd", tuple((e, m - s, m + s) for e, m, s in stats), "#202124")] if len(records) > 1 else []
        floor, last = step.goals.accuracy_floor, step.goals.last_epochs
        # Scaled to the epochs after the first third and to the floor: the early epochs, far below, are drawn
        # on the bottom edge as triangles, and the point that decides the verdict is always inside.
        later = [row["test_acc"] for r in records for row in r["history"] if row["epoch"] > epochs // 3]
        lo, hi = nice_range(later + [floor], pad=0.08)
        hi = min(hi, 100.0)
        tails = [(row["test_acc"], r["seed"], row["epoch"]) for r in records for row in r["history"][-last:]]
        low, seed, at = min(tails, key=lambda t: (t[0], t[1], t[2])) if tails else (None, None, None)
        marks = [(at, low, f"lowest of the last {last}: {low:.2f} % (seed {seed}, epoch {at})")] if tails else []
        charts.append(line_chart(f"Test accuracy per epoch, each seed ({lo:g}–{hi:g} %)",
                                 seeds + [mean], bands=band, floor=floor, shade_from=judged, marks=marks,
                                 x_range=x_range, x_ticks=x_ticks, y_range=(lo, hi), y_label="test accuracy, %"))
        train, test = _mean_std_by_epoch(records, "train_acc"), _mean_std_by_epoch(records, "test_acc")
        # Epoch 1 is often far below the rest; leaving it out of the range keeps the later gap readable.
        later = [m for e, m, _ in train + test if e > 1] or [m for _, m, _ in train + test]
        y_lo, y_hi = nice_range(later)
        charts.append(line_chart("Train vs test accuracy (mean over seeds)",
                                 [Series("train (augmented, dropout on)", tuple((e, m) for e, m, _ in train), TRAIN_COLOR, 2),
                                  Series("test", tuple((e, m) for e, m, _ in test), TEST_COLOR, 2)],
                                 x_range=x_range, x_ticks=x_ticks, y_range=(y_lo, min(y_hi, 100.0)), y_label="accuracy, %"))
        train, test = _mean_std_by_epoch(records, "train_loss"), _mean_std_by_epoch(records, "test_loss")
        losses = [m for _, m, _ in train + test if m > 0]
        if losses:
            y_range = (min(losses) / 1.5, max(losses) * 1.5)
            ticks = log_ticks(*y_range)
            ticks = ticks if len(ticks) > 1 else nice_ticks(*y_range, 3)  # a narrow range may hold one 1-2-5 value
            charts.append(line_chart("Loss (mean over seeds, log scale)",
                                     [Series("train", tuple((e, m) for e, m, _ in train), TRAIN_COLOR, 2),
                                      Series("test", tuple((e, m) for e, m, _ in test), TEST_COLOR, 2)],
                                     x_range=x_range, x_ticks=x_ticks, y_range=y_range, log_y=True,
                                     y_ticks=ticks, y_label="cross-entropy"))
    charts.append(lr_chart(step, records, x_range, x_ticks))
    return charts


def lr_chart(step: Step, records: list[dict], x_range, x_ticks) -> str:
    """The schedule as configured (from engine.schedule.learning_rate, per iteration) and the lr the runs logged."""
    from ..engine.schedule import learning_rate

    images = records[0]["provenance"].get("train_images", 60_000) if records else 60_000
    per_epoch, total = math.ceil(images / step.batch_size), step.epochs * math.ceil(images / step.batch_size)
    samples = 40  # points per epoch: enough for the one-cycle ramp, few enough to keep the file small
    # x = e is the end of epoch e, as in the other charts, so the lr logged at the end of each epoch
    # sits on the curve.
    curve = [(k / samples, learning_rate(step, min(max(round(k / samples * per_epoch) - 1, 0), total - 1), per_epoch))
             for k in range(step.epochs * samples + 1)]
    logged = []
    if records:
        logged = [Series("logged (end of epoch)", tuple((row["epoch"], row["lr"]) for row in records[0]["history"]),
                         "#202124", width=0, dots=True)]
    hi = max([y for _, y in curve] + [row["lr"] for r in records for row in r["history"]])
    return line_chart(f"Learning rate: {step.describe_lr()}",
                      [Series("schedule", tuple(curve), "#5f6368", 1.8)] + logged,
                      x_range=(0, x_range[1]), x_ticks=[0] + x_ticks, y_range=(0, hi * 1.08),
                      x_label="epochs trained", y_label="learning rate")


def layer_rows(rows: list[dict] | None) -> dict | None:
    """A step's per-layer table, as measure.py measured it (None: not measured for this folder)."""
    if not rows:
        return None
    return {"rows": [{"layer": r["layer"], "output": "×".join(map(str, r["output"])), "params": count(r["params"]),
                      "macs": count(r["macs"]), "rf": r["rf"], "jump": r["jump"]} for r in rows],
            "params": count(sum(r["params"] for r in rows)), "macs": count(sum(r["macs"] for r in rows))}


def step_verdict(step: Step, records: list[dict], summary: dict | None) -> dict:
    """The goals cell: met on every seed or not, which goals failed on how many seeds, the known reason."""
    if not records:
        return {"status": "none", "text": "no runs", "failed": [], "known_miss": step.known_miss, "short": "no runs"}
    n = len(records)
    g = step.goals
    names = {"params": f"over {g.max_params:,} params", "epochs": f"not completed within {g.max_epochs} epochs",
             "floor": f"below {g.accuracy_floor:g} % in the last {g.last_epochs}", "diverged": "diverged"}
    failed = []
    for key, label in names.items():
        misses = sum(not r["verdicts"][key]["met"] for r in records)
        if misses:
            failed.append(f"{label}: {misses}/{n} seeds")
    short = len(step.seeds) - n
    ok = summary["every_seed"] and short <= 0
    # "k of n seeds meet ...", never "k/n": after "not met" a bare count reads as the seeds that failed
    text = f"{summary['seeds_meeting']} of {n} seeds meet its per-seed goals" + (
        f" ({len(step.seeds)} planned)" if short > 0 else "")
    if g.mean_final_floor and not at_least(summary["final_mean"], g.mean_final_floor):
        # 99.498 would print as 99.50 beside a 99.5 bar: a third decimal where two would hide the miss
        mean = summary["final_mean"]
        text += f"; mean final {num(mean, 2 if round(mean, 2) < g.mean_final_floor else 3)} % < {g.mean_final_floor:g} %"
    why = [f"{summary['seeds_meeting']} of {n} seeds"] if summary["seeds_meeting"] < n else []
    if g.mean_final_floor and not at_least(summary["final_mean"], g.mean_final_floor):
        why.append(f"mean final {num(summary['final_mean'], 3)} %")
    short = "met" if ok else "not met: " + ("; ".join(why) or f"{n} of {len(step.seeds)} seeds run")
    return {"status": "met" if ok else "miss", "text": ("met: " if ok else "not met: ") + text, "failed": failed,
            "known_miss": step.known_miss, "short": short}


def stricter_goals(goals: Goals) -> str | None:
    """What a step asks beyond the mission ("≤ 8,000 params, mean final ≥ 99.5 %"); None when nothing."""
    m, parts = MISSION_GOALS, []
    if goals.max_params != m.max_params:
        parts.append(f"≤ {goals.max_params:,} params")
    if (goals.accuracy_floor, goals.last_epochs) != (m.accuracy_floor, m.last_epochs):
        parts.append(f"≥ {goals.accuracy_floor:g} % in each of the last {goals.last_epochs}")
    if goals.max_epochs != m.max_epochs:
        parts.append(f"≤ {goals.max_epochs} epochs")
    if goals.mean_final_floor:
        parts.append(f"mean final ≥ {goals.mean_final_floor:g} %")
    return ", ".join(parts) or None


def mission_view(step: Step, records: list[dict]) -> dict:
    """The seeds of a step that meet the mission, as "k of n"; met when every planned seed ran and met it."""
    k = sum(map(meets_mission, records))
    met = bool(records) and k == len(records) and set(step.seeds) <= {r["seed"] for r in records}
    text = f"{k} of {len(records)}" + (f" ({len(step.seeds)} planned)" if len(records) < len(step.seeds) else "")
    return {"k": k, "n": len(records), "met": met, "status": "none" if not records else ("met" if met else "miss"),
            "text": text if records else "no runs", "sort": k / len(records) if records else None}


def signed_interval(ci: tuple[float, float]) -> str | None:
    """'[−0.12, +0.03]' for a paired difference's 95 % CI; None where one seed gives no interval."""
    lo, hi = ci
    return None if missing(lo) else f"[{signed(lo)}, {signed(hi)}]"


def vs_parent_text(parent: str | None, paired: dict | None) -> str | None:
    """One sentence: the step's final accuracy minus its parent's on the seeds both ran, with its 95 % CI."""
    if not paired:
        return None
    n = len(paired["seeds"])
    ci = f" (95 % CI {interval})" if (interval := signed_interval(paired["ci95"])) else ""
    per_seed = ", ".join(f"{signed(d)} (seed {s})" for s, d in zip(paired["seeds"], paired["deltas"]))
    return (f"Final test accuracy minus {parent}'s on the same {n} seed{'s' if n != 1 else ''}: "
            f"{signed(paired['mean'])} % on average{ci}; per seed {per_seed}.")


def draws_text(records: list[dict], goals: Goals) -> str | None:
    """One sentence: how many of the ways to draw DRAW of the step's seeds would meet every goal."""
    found = draws_meeting_goals(records, goals)
    if found is None:
        return None
    hits, total = found
    return (f"Of the {total:,} ways to draw {DRAW} of these {len(records)} seeds, {hits:,} ({100 * hits / total:.0f} %) "
            f"would meet every goal.")


def measured_result(step: Step, records: list[dict]) -> str:
    """Our steps' Result, written from the records (the registry keeps only what they cannot say): the
    parameters, each seed's final and lowest-of-last accuracy, how many hold the floor, the last epoch's
    training accuracy and the time a run took."""
    if not records:
        return "Nothing measured: no records of this step in this folder."
    last, floor = step.goals.last_epochs, step.goals.accuracy_floor
    ran = sorted((r for r in records if r["history"]), key=lambda r: r["seed"])
    finals = final_accuracies(ran)
    held, missed = holding(step.goals, ran)
    spread = f" ± {num(statistics.stdev(finals.values()))}" if len(finals) > 1 else ""
    text = f"{count(records[0]['params'])} parameters. " + (
        f"Final-epoch test accuracy {num(statistics.fmean(finals.values()), 3)}{spread} % over {len(finals)} "
        f"seed{'s' if len(finals) != 1 else ''} ({', '.join(num(v) for v in finals.values())}); " if finals else "No run finished; ")
    text += (f"the lowest of the last {last} epochs per seed {', '.join(num(lowest_of_last(r['history'], last)) for r in ran)}"
             f" %: the {floor:g} % floor holds on {len(held)} of {len(ran)} seed{'s' if len(ran) != 1 else ''}." if ran else
             "no run got through an epoch.")
    if missed:
        dips = {r["seed"]: min(r["history"][-last:], key=lambda row: (row["test_acc"], row["epoch"]))
                for r in ran if r["seed"] in missed}
        text += " Lowest epoch of each seed that misses: " + "; ".join(
            f"seed {seed}, {num(row['test_acc'])} % in epoch {row['epoch']}" for seed, row in dips.items()) + "."
    if diverged := [r["seed"] for r in records if r["diverged_at"] is not None]:
        text += f" Diverged: seed{'s' if len(diverged) > 1 else ''} {', '.join(map(str, diverged))}."
    if train := [r["history"][-1]["train_acc"] for r in ran if r["diverged_at"] is None]:
        text += f" Training accuracy in the last epoch, on the images as trained, {num(statistics.fmean(train))} %."
    minutes = [r["provenance"]["wall_seconds"] / 60 for r in records if "wall_seconds" in r.get("provenance", {})]
    if minutes:
        text += (f" {num(statistics.fmean(minutes), 1)} minutes a run on average "
                 f"({num(min(minutes), 1)}–{num(max(minutes), 1)}, on {', '.join(sorted(machines(records)))}).")
    return text


def machines(records: list[dict]) -> set[str]:
    """The CPUs or GPUs the records were trained on, as their provenance names them."""
    return {r["provenance"].get("device_name") or r["provenance"].get("device", "an unnamed device") for r in records}


def step_view(step: Step, records: list[dict], parent_records: list[dict] | None = None) -> dict:
    summary = step_summary(records, step.goals) if records else None
    finals = list(final_accuracies(records).values())
    bests = [max(r["history"], key=lambda row: (row["test_acc"], -row["epoch"])) for r in records if r["history"]]
    ours_best = statistics.fmean(b["test_acc"] for b in bests) if bests else None
    ours_epoch = statistics.median(b["epoch"] for b in bests) if bests else None
    sr = step.seed_report
    parent = STEPS.get(step.parent) if step.parent else None
    view = {
        "name": step.name, "anchor": "step-" + step.name, "parent": step.parent, "step": step,
        "target": step.target, "result": step.result, "analysis": step.analysis,
        "measured_result": None if step.seed_report else measured_result(step, records), "notes": step.notes,
        "known_miss": step.known_miss, "goals": step.goals.describe(),
        "params": count(records[0]["params"] if records else step.params),
        "params_v": records[0]["params"] if records else step.params,
        "epochs": step.epochs, "batch": step.batch_size, "lr": step.describe_lr(), "augment": step.describe_augment(),
        "distill": step.distill.describe() if step.distill.active else None,
        "n": len(records), "planned": len(step.seeds), "finals": finals,
        "final_mean": summary["final_mean"] if summary else None,
        "final": (f"{num(summary['final_mean'])} ± {num(summary['final_std'])}" if finals else "—"),
        "n_final": len(finals),
        "ci": summary["final_ci95"] if summary else (math.nan, math.nan),
        "ci_text": (f"[{num(summary['final_ci95'][0])}, {num(summary['final_ci95'][1])}]"
                    if summary and not missing(summary["final_ci95"][0]) else "—"),
        "min_last": summary["min_of_min_last"] if summary else None,
        "first_hit": summary["median_first_hit"] if summary else None,
        "seed_best": sr.best_test_acc if sr else None,
        "seed_epoch": sr.epoch if sr else None,
        "seed_epochs_run": sr.epochs_run if sr else None,
        "ours_best": ours_best, "ours_epoch": ours_epoch,
        "delta": ours_best - sr.best_test_acc if sr and ours_best is not None else None,
        "diverged": [(r["seed"], r["diverged_at"]) for r in records if r["diverged_at"] is not None],
        "diff": [{"field": k, "parent": describe_value(a), "child": describe_value(b)}
                 for k, (a, b) in config_diff(parent, step).items()] if parent else [],
        "wall": summary["wall_seconds"] if summary else None,
        "vs_parent": vs_parent_text(step.parent, paired_delta(records, parent_records or [])),
        "draws": draws_text(records, step.goals),
        "quoted": sr is not None,
        "lowests": [(r["seed"], lowest_of_last(r["history"], MISSION_GOALS.last_epochs)) for r in records if r["history"]],
        "ci_half": (summary["final_ci95"][1] - summary["final_ci95"][0]) / 2 if summary else None,
        "mission": mission_view(step, records),
        "stricter": stricter_goals(step.goals),
        "prediction": prediction_view(step, records),
    }
    view["mean_lowest"] = statistics.fmean(v for _, v in view["lowests"]) if view["lowests"] else None
    view["verdict"] = step_verdict(step, records, summary)
    return view


def prediction_view(step: Step, records: list[dict]) -> dict | None:
    """survival.step_prediction, formatted: the chance that a new seed misses the floor."""
    p = step_prediction(step, records) if records else None
    if p is None or not p["n"]:
        return None
    low, high = p["rate_ci95"]
    return {**p, "rate_text": "—" if missing(p["rate"]) else f"{100 * p['rate']:.1f} %",
            "interval": f"{100 * low:.0f}–{100 * high:.0f} %",
            "fresh_text": "—" if missing(p["all_fresh_hold"]) else f"{p['all_fresh_hold']:.2f}"}


def mission_verdict(views: dict[str, dict], records_by_step: dict[str, list[dict]]) -> dict:
    """The mission's goals judged on FINAL_STEP's runs, each with its evidence."""
    from ..study.survival import setup_words

    step, records = STEPS[FINAL_STEP], records_by_step.get(FINAL_STEP, [])
    g = MISSION_GOALS
    with_runs = sum(1 for name in STEPS if records_by_step.get(name))
    rows = [{"goal": f"≥ {MIN_STEPS} steps in the ablation, each with runs", "met": with_runs >= MIN_STEPS,
             "evidence": f"{with_runs} of {len(STEPS)} registry steps have run records"}]
    if not records:
        none = f"no runs of {FINAL_STEP}"
        rows = [{"goal": goal, "met": False, "evidence": none} for goal in
                (f"< {g.max_params + 1:,} parameters", f"≥ {g.accuracy_floor:g} % test accuracy in each of the last "
                 f"{g.last_epochs} epochs", f"≤ {g.max_epochs} epochs", "on every seed")] + rows
    else:
        params = max(r["params"] for r in records)
        holds = [holds_floor(r, g) for r in records]
        tails = [lowest_of_last(r["history"], g.last_epochs) for r in records if r["history"]]
        epochs = max(len(r["history"]) for r in records)
        every = [h and r["params"] <= g.max_params and len(r["history"]) <= g.max_epochs for h, r in zip(holds, records)]
        run_seeds = {r["seed"] for r in records}
        planned = set(step.seeds)
        rows = [
            {"goal": f"< {g.max_params + 1:,} parameters", "met": params <= g.max_params,
             "evidence": f"{params:,} parameters"},
            {"goal": f"≥ {g.accuracy_floor:g} % test accuracy in each of the last {g.last_epochs} epochs",
             "met": all(holds), "evidence": f"held on {sum(holds)}/{len(records)} seeds; lowest of the last "
                                            f"{g.last_epochs} epochs over all seeds: {num(min(tails) if tails else None)} %"},
            {"goal": f"≤ {g.max_epochs} epochs", "met": epochs <= g.max_epochs,
             "evidence": f"{epochs} epochs trained (of {step.epochs} configured)"},
            {"goal": "on every seed", "met": all(every) and planned <= run_seeds,
             "evidence": f"{sum(every)}/{len(records)} seeds meet all of the above, on "
                         f"{' and '.join(sorted({setup_words(r['provenance']) for r in records}))}; "
                         f"{len(run_seeds & planned)} of {len(planned)} planned seeds run (other set-ups: above)"},
        ] + rows
    view = views[FINAL_STEP]
    return {"step": FINAL_STEP, "rows": rows, "met": all(r["met"] for r in rows), "margin": margin(records),
            "view": view, "own": view["verdict"], "own_goals": view["goals"],
            "meeting": steps_meeting_mission(records_by_step)}


def margin(records: list[dict]) -> dict | None:
    """How far the lowest accuracy of the judged window, over all seeds, is from the floor: in percent and in
    test images (10,000 images: 0.01 % is one image), and where it is (seed, epoch)."""
    g = MISSION_GOALS
    tails = [(row["test_acc"], r["seed"], row["epoch"], r["provenance"].get("eval_images") or 10_000)
             for r in records if r["diverged_at"] is None for row in r["history"][-g.last_epochs:]]
    if not tails:
        return None
    low, seed, at, images = min(tails, key=lambda t: t[:3])
    # correct images, each rounded to the whole image it is, so the difference is a whole number of images
    images_over = round(low * images / 100) - round(g.accuracy_floor * images / 100)
    return {"lowest": low, "seed": seed, "epoch": at, "images": images, "over": images_over,
            "percent": 100 * images_over / images, "holds": at_least(low, g.accuracy_floor)}


def steps_meeting_mission(records_by_step: dict[str, list[dict]]) -> list[str]:
    """Every step (registry order) whose runs meet the mission's goals on all of its planned seeds.

    A fact about the records, listed beside the verdict; the verdict itself stays on FINAL_STEP,
    fixed before any run, so no step is picked for it by its test accuracy.
    """
    out = []
    for name, step in STEPS.items():
        records = records_by_step.get(name, [])
        if mission_view(step, records)["met"]:
            out.append(f"{name} ({records[0]['params']:,} parameters, {len(records)} of {len(records)} seeds)")
    return out


# --- what the final model gets wrong ---------------------------------------------------------------

def png_gray(pixels: bytes, width: int, height: int) -> bytes:
    """An 8-bit greyscale PNG, written by hand (zlib + struct): no imaging library needed."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def mistakes_view(measured: dict | None) -> dict:
    """measure.py's account of the final model's mistakes, with each shown image drawn as a PNG."""
    if not measured:
        return {"missing": "not computed for this folder (python -m ablation measure --runs DIR)"}
    if "missing" in measured:
        return measured
    shown = [{**m, "src": data_uri(png_gray(bytes(255 - p for p in bytes.fromhex(m["pixels"])), 28, 28))}
             for m in measured["shown"][:MAX_MISTAKES_SHOWN]]
    return {**measured, "shown": shown}


def confusion_view(confusion: list[list[int]]) -> list[list[dict]]:
    """Cells with a shade: diagonal green by its share of the row, off-diagonal red by its share of the worst."""
    worst = max([confusion[i][j] for i in range(10) for j in range(10) if i != j] + [1])
    rows = []
    for i, row in enumerate(confusion):
        cells = []
        for j, v in enumerate(row):
            if i == j:
                style = "background:#e6f4ea"
            elif v:
                style = f"background:rgba(217,48,37,{0.12 + 0.6 * v / worst:.2f})"
            else:
                style = ""
            cells.append({"v": v, "style": style, "diag": i == j})
        rows.append(cells)
    return rows


# --- provenance ------------------------------------------------------------------------------------

ENV_KEYS = ("commit", "dirty", "source_hash", "python", "torch", "torchvision", "device", "device_name", "threads",
            "seeds_per_pass", "platform")


def record_flags(step: Step | None, record: dict) -> list[str]:
    from ..runs.records import not_current_because

    p, flags = record["provenance"], not_current_because(record)
    if p.get("dirty") is None and not flags:
        flags.append("commit unknown (not made in a git checkout)")
    if record["evaluated_on"] != "test":
        flags.append(f"evaluated on {record['evaluated_on']}")
    elif p.get("train_images", 60_000) < 60_000:
        flags.append(f"trained on {p['train_images']:,} images only (a smoke run)")
    if step is not None:
        if len(record["history"]) < step.epochs and record["diverged_at"] is None:
            flags.append(f"{len(record['history'])} of {step.epochs} epochs")
        changed = changed_run_fields(step, record["config"])
        if changed:
            flags.append("config differs from the registry in " + ", ".join(changed))
    if record["diverged_at"] is not None:
        flags.append(f"diverged at epoch {record['diverged_at']}")
    return flags


def when(iso: str) -> str:
    """'2026-11-28T15:59:36+00:00' -> '2026-11-28 15:59 UTC' (records store UTC)."""
    return iso[:16].replace("T", " ") + (" UTC" if iso.endswith("+00:00") else iso[19:])


def provenance_view(records_by_step: dict[str, list[dict]]) -> dict:
    from ..runs.records import GENERATION, source_hash

    all_records = [r for name in sorted(records_by_step) for r in records_by_step[name]]
    envs: dict[tuple, dict] = {}
    for r in all_records:
        p = r["provenance"]
        key = tuple(str(p.get(k)) for k in ENV_KEYS)
        env = envs.setdefault(key, {**{k: p.get(k) for k in ENV_KEYS}, "records": 0, "steps": [], "wall": 0.0})
        env["records"] += 1
        env["wall"] += p["wall_seconds"]
        if r["step"] not in env["steps"]:
            env["steps"].append(r["step"])
    flags = [{"where": f"{r['step']} seed {r['seed']}", "flags": "; ".join(f)}
             for r in all_records if (f := record_flags(STEPS.get(r["step"]), r))]
    walls = []
    for name in STEPS:
        recs = records_by_step.get(name, [])
        if recs:
            secs = [r["provenance"]["wall_seconds"] for r in recs]
            walls.append({"step": name, "n": len(recs), "mean": num(statistics.fmean(secs), 1),
                          "total": num(sum(secs), 1),
                          "per_epoch": num(statistics.fmean(row["seconds"] for r in recs for row in r["history"]), 2)
                          if any(r["history"] for r in recs) else "—",
                          "device": ", ".join(sorted({r["provenance"].get("device_name") or "?" for r in recs}))})
    started = sorted(r["provenance"]["started"] for r in all_records)
    finished = sorted(r["provenance"]["finished"] for r in all_records)
    # One row per engine and environment; the commits that ran each are folded beside it.
    engines: dict[tuple, dict] = {}
    for e in envs.values():
        key = tuple(str(e[k]) for k in ENV_KEYS if k not in ("commit", "dirty"))
        row = engines.setdefault(key, {**e, "commits": [], "records": 0, "wall": 0.0, "dirty": False})
        row["commits"].append(str(e["commit"] or "unknown")[:12] + (" (dirty)" if e["dirty"] else ""))
        row["records"] += e["records"]
        row["wall"] += e["wall"]
        row["dirty"] = row["dirty"] or bool(e["dirty"])
    return {"source_hash": source_hash(), "generation": GENERATION, "envs": sorted(envs.values(), key=lambda e: (-e["records"], str(e["commit"]))),
            "engines": sorted(engines.values(), key=lambda e: (-e["records"], str(e["source_hash"]))),
            "platforms": sorted({str(e["platform"]) for e in envs.values()}),
            "flags": flags, "walls": walls, "n": len(all_records),
            "total_wall": num(sum(r["provenance"]["wall_seconds"] for r in all_records), 1),
            "dates": (when(started[0]), when(finished[-1])) if all_records else None,
            "others": [(name, len(recs)) for name, recs in sorted(records_by_step.items()) if name not in STEPS]}


BENCH_LABELS = {
    "reference_samples_per_s": "reference notebook loop, images/s",
    "engine_samples_per_s": "this engine, one seed, images/s",
    "multi_seed_samples_per_s": "this engine, seeds in one pass, images/s",
    "speedup_single": "speed-up, one seed",
    "speedup_multi": "speed-up, seeds in one pass",
}


def bench_view(bench: dict | None) -> list[dict] | None:
    if bench is None:
        return None
    rows = []
    for key in sorted(bench, key=lambda k: (k not in BENCH_LABELS, list(BENCH_LABELS).index(k) if k in BENCH_LABELS else 0, k)):
        v = bench[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        elif key.startswith("speedup"):
            text = f"× {v:.2f}"
        elif key.endswith("per_s"):
            text = f"{v:,.0f}"
        else:
            text = f"{v:g}" if isinstance(v, float) else f"{v:,}"
        rows.append({"key": key, "label": BENCH_LABELS.get(key, key), "value": text})
    return rows


def load_bench(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


# --- the validation runs behind the choices -----------------------------------------------------------

def vs_registered_text(step: Step, records: list[dict], runs: dict[str, list[dict]]) -> str:
    """A variant's final held-out accuracy minus its step's as registered, on the seeds both ran."""
    paired = paired_delta(records, as_registered(step, runs))
    if not paired:
        return "no shared seed"
    ci = f" {interval}" if (interval := signed_interval(paired["ci95"])) else ""
    return f"{signed(paired['mean'])}{ci} ({len(paired['seeds'])})"


def fold_view(folds: dict[int, dict[str, list[dict]]], records_by_step: dict[str, list[dict]]) -> list[dict]:
    """k-fold validation against the test set: for each registry step with runs as registered in two or more
    folds (load_folds' answer), its final held-out accuracy per fold, their mean, and its final test
    accuracy. It shows whether the held-out split ranks steps as the test set does."""
    rows = []
    for name, step in STEPS.items():
        finals = {k: f for k, runs in sorted(folds.items()) if (f := final_accuracies(as_registered(step, runs)))}
        seeds = sorted(set.intersection(*(set(f) for f in finals.values()))) if finals else []
        if len(finals) < 2 or not seeds:
            continue
        # The seeds every fold ran, so that no fold's figure rests on other seeds than the rest.
        per_fold = {k: statistics.fmean(f[s] for s in seeds) for k, f in finals.items()}
        test = list(final_accuracies(records_by_step.get(name, [])).values())
        rows.append({"name": name, "params": count(step.params), "params_v": step.params, "n_folds": len(per_fold),
                     "folds": ", ".join(map(str, per_fold)),
                     "seeds": ", ".join(map(str, seeds)),
                     "per_fold": ", ".join(num(v) for v in per_fold.values()),
                     "mean": num(statistics.fmean(per_fold.values())), "mean_v": statistics.fmean(per_fold.values()),
                     "test": num(statistics.fmean(test)) if test else "—", "n_test": len(test),
                     "test_v": statistics.fmean(test) if test else None})
    return rows


def screen_view(folds: dict[int, dict[str, list[dict]]], rule: Rule = Rule()) -> list[dict]:
    """One row per variant of a registry step screened on two or more folds (`python -m ablation screen`):
    its final held-out accuracy minus the step's as registered, (fold, seed) by (fold, seed), and the
    screening rule's verdict."""
    rows = []
    for name in sorted({n for runs in folds.values() for n in runs if "[" in n}):
        base = name.partition("[")[0]
        if base not in STEPS or len(found := pairs(STEPS[base], name, folds)) < 2 or len({p.fold for p in found}) < 2:
            continue
        v = verdict(found, rule)
        label = (lambda p: f"{p.fold}") if len({p.seed for p in found}) == 1 else (lambda p: f"{p.fold}/s{p.seed}")
        params = next(r["params"] for runs in folds.values() for r in runs.get(name, []))
        rows.append({"name": name, "base": base, "overrides": name[len(base) + 1:-1], "params": count(params),
                     "params_v": params, "n": v["n"], "ahead_v": v["ahead"] / v["n"] if v["n"] else None,
                     "min_delta_v": v["floor_change"],
                     "folds": ", ".join(map(str, v["folds"])),
                     "deltas": ", ".join(f"{label(p)}: {'diverged' if math.isnan(p.variant) else signed(p.delta)}" for p in found),
                     "mean": signed(v["mean"]), "mean_v": v["mean"], "ci": signed_interval(v["ci95"]) or "",
                     "ahead": f"{v['ahead']}/{v['n']}", "passed": v["passed"], "verdict": v["text"],
                     "min_delta": signed(v["floor_change"])})
    return rows


def validation_view(runs: dict[str, list[dict]]) -> list[dict]:
    """One row per variant among `runs` (reports/validation, loaded): the runs every choice of steps 6 onward
    was made on, so that a step's Analysis can be checked against them. Accuracy here is on the held-out
    training images, never the test set; variants are named as `run --set` named them."""
    rows = []
    last = MISSION_GOALS.last_epochs  # the same window as the summary table's "min, last N"
    for name, records in sorted(runs.items()):
        finals = final_accuracies(records)
        # A diverged run keeps its column, so the seeds, finals and minima stay aligned.
        cell = lambda r, value: f"diverged @ {r['diverged_at']}" if r["seed"] not in finals else num(value(r))
        base, _, overrides = name.partition("[")
        paired = paired_delta(records, as_registered(STEPS[base], runs)) if base in STEPS and overrides else None
        mins = [lowest_of_last(r["history"], last) for r in records if r["seed"] in finals]
        rows.append({"name": name, "base": base, "in_registry": base in STEPS, "overrides": overrides[:-1] or "as registered",
                     "params": count(records[0]["params"]), "params_v": records[0]["params"], "n": len(records),
                     "mean_v": statistics.fmean(finals.values()) if finals else None,
                     "vs_base_v": paired["mean"] if paired else None,
                     "min_v": min(mins) if mins else None,
                     "seeds": ", ".join(str(r["seed"]) for r in records),
                     "finals": ", ".join(cell(r, lambda r: finals[r["seed"]]) for r in records),
                     "mean": num(statistics.fmean(finals.values())) if finals else "—",
                     "mins": ", ".join(cell(r, lambda r: lowest_of_last(r["history"], last)) for r in records),
                     "vs_base": vs_registered_text(STEPS[base], records, runs) if base in STEPS and overrides else "—",
                     "evaluated_on": sorted({str(r.get("evaluated_on")) for r in records}),
                     "held_out": all(str(r.get("evaluated_on")).startswith("validation") for r in records)})
    return rows


# --- rendering -------------------------------------------------------------------------------------

def _env(autoescape: bool):
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(num=num, signed=signed, count=count, epoch=epoch, sort_key=sort_key, breakable=breakable)
    return env


def build_views(records_by_step: dict[str, list[dict]], confirmations: dict[str, list[dict]] | None = None,
                other_setups: dict[str, dict[str, list[dict]]] | None = None) -> dict:
    """The report's context. `confirmations`: the records of the confirmation seeds (reports/confirmation);
    `other_setups`: {folder: its records by step}, the final step trained on other machines or float paths
    (reports/other-setups/*)."""
    views = {name: step_view(step, records_by_step.get(name, []), records_by_step.get(step.parent or "", []))
             for name, step in STEPS.items()}
    for name, view in views.items():
        view["confirmation"] = confirmation(STEPS[name], records_by_step.get(name, []),
                                            (confirmations or {}).get(name, []))
    verdict = mission_verdict(views, records_by_step)
    elsewhere = {folder: by_step[FINAL_STEP] for folder, by_step in (other_setups or {}).items() if by_step.get(FINAL_STEP)}
    verdict["set_ups"] = set_ups(STEPS[FINAL_STEP], records_by_step.get(FINAL_STEP, []), elsewhere)
    others = verdict["set_ups"][1:]  # what the predicted miss rate means in practice: misses seen elsewhere
    verdict["elsewhere"] = {"n": sum(u["n"] for u in others), "missed": sum(len(u["missed"]) for u in others)}
    return {"steps": list(views.values()), "verdict": verdict, "mission": MISSION,
            "fresh": FRESH, "thin": THIN,
            "final_step": FINAL_STEP, "floor": MISSION_GOALS.accuracy_floor, "last": MISSION_GOALS.last_epochs,
            "stricter_bar": STRICTER_BAR, "max_epochs": MISSION_GOALS.max_epochs}


def implementations_view(records_by_step: dict[str, list[dict]], notebook: dict[str, list[dict]]) -> list[dict]:
    """Each step trained by the second implementation (notebook.py: torchvision transforms, a DataLoader,
    torch.optim), its distribution beside the engine's judged seeds, and the difference with its interval."""
    out = []
    for name, theirs in notebook.items():
        step = STEPS.get(name)
        ours = [r for r in records_by_step.get(name, []) if step and r["seed"] in step.seeds]
        if step and ours and theirs:
            c = compare_implementations(ours, theirs, step.goals)
            rows = [{"name": k, **c[k]} for k in ("engine", "notebook")]
            out.append({"step": name, "rows": rows, "difference": c["difference"], "last": c["last"],
                        "floor": c["floor"]})
    return out


def reproduction_view(runs: Path) -> dict | None:
    """The reproduction table of a folder of fresh runs against the committed study; None for the study itself."""
    from ..runs import records
    from ..runs import reproduce

    if Path(runs).resolve() == records.DEFAULT_RUNS.resolve():
        return None
    pairs = reproduce.compare(runs)
    cells, header = reproduce.rows(pairs)
    return {"rows": [{"cells": c, "relation": p.relation} for c, p in zip(cells, pairs)], "header": header,
            "tally": reproduce.tally(pairs), "committed": str(records.DEFAULT_RUNS), "fresh": str(runs),
            "defect": reproduce.DIFFERENT}


def render_html(records_by_step: dict[str, list[dict]], mistakes: dict | None = None, bench: dict | None = None,
                validation: list[dict] | None = None, folds: list[dict] | None = None,
                screens: list[dict] | None = None, confirmations: dict[str, list[dict]] | None = None,
                reproduction: dict | None = None, implementations: list[dict] | None = None,
                layers: dict[str, list[dict]] | None = None,
                other_setups: dict[str, dict[str, list[dict]]] | None = None) -> str:
    """The report as one self-contained HTML page. `mistakes` is final_mistakes(...)'s answer (None: not
    computed); `bench` the parsed bench.json (None: not measured); `validation` validation_view(...)'s rows;
    `folds` fold_view(...)'s; `screens` screen_view(...)'s; `confirmations` the confirmation seeds' records;
    `reproduction` reproduction_view(...)'s table (a report of fresh runs); `implementations`
    implementations_view(...)'s comparisons; `layers` each step's per-layer table (measure.py); `other_setups`
    the final step's records made elsewhere, by folder (build_views)."""
    ctx = build_views(records_by_step, confirmations, other_setups)
    ctx["reproduction"], ctx["implementations"] = reproduction, implementations or []
    for view in ctx["steps"]:
        view["charts"] = [Markup(svg) for svg in step_charts(view["step"], records_by_step.get(view["name"], []))]
        view["layers"] = layer_rows((layers or {}).get(view["name"]))
    ctx["ablation_chart"] = Markup(ablation_chart(
        [{"name": v["name"], "lowests": v["lowests"], "seed_best": v["seed_best"], "params": v["params_v"],
          "max_params": v["step"].goals.max_params} for v in ctx["steps"]]))
    mistakes = mistakes or {"missing": "not computed"}
    if "confusion" in mistakes:
        mistakes = {**mistakes, "matrix": confusion_view(mistakes["confusion"])}
    ctx.update(mistakes=mistakes, bench=bench_view(bench), provenance=provenance_view(records_by_step),
               validation=validation or [], folds=folds or [], screens=screens or [],
               rule=Rule().describe())
    return _env(True).get_template("report.html.j2").render(ctx)


def render_markdown(records_by_step: dict[str, list[dict]], confirmations: dict[str, list[dict]] | None = None,
                    other_setups: dict[str, dict[str, list[dict]]] | None = None) -> str:
    """The verdict, the summary table and each step's Target / Result / Analysis as Markdown."""
    return _env(False).get_template("report.md.j2").render(build_views(records_by_step, confirmations, other_setups))


def report_path(runs: Path, fmt: str = "html") -> Path:
    """Where the report of the records under `runs` goes: reports/ablation.html for the study's own folder,
    reports/runs; inside the folder itself for any other, so a scratch folder never overwrites the study's."""
    from ..runs.records import DEFAULT_RUNS

    if Path(runs).resolve() == DEFAULT_RUNS.resolve():
        return DEFAULT_OUT[fmt]
    return Path(runs) / DEFAULT_OUT[fmt].name


def render_files(runs: Path, out: Path | None = None, fmt: str = "html", bench: Path | None = None,
                 validation: Path | None = None) -> list[Path]:
    """Render the records under `runs` to `out` (default reports/ablation.html or .md); return the paths written.

    bench: the speed figures' JSON, by default bench.json beside the runs folder (reports/bench.json).
    validation: the validation runs' folder, by default validation/ beside the runs folder.
    """
    from ..runs.records import atomic_write, load_all, load_folds, load_measured

    if fmt not in DEFAULT_OUT:
        raise ValueError(f"unknown report format {fmt!r}: html or md")
    runs = Path(runs)
    out = Path(out) if out is not None else DEFAULT_OUT[fmt]
    records_by_step = load_all(runs)
    # The confirmation seeds' records live beside the study's (reports/confirmation), apart from the judged seeds.
    confirmations = load_all(runs.parent / "confirmation")  # {} where there is no such folder
    # The final step trained elsewhere (another CPU, a capped float path): one records folder each.
    other = {f"{path.parent.name}/{path.name}": load_all(path) for path in sorted((runs.parent / OTHER_SETUPS).glob("*/"))}
    if fmt == "md":
        text = render_markdown(records_by_step, confirmations, other)
    else:
        folds = load_folds(Path(validation) if validation is not None else runs.parent / "validation")
        measured = load_measured(runs)
        text = render_html(records_by_step, mistakes_view(measured.get("mistakes")),
                           load_bench(bench if bench is not None else runs.parent / "bench.json"),
                           validation_view(folds[0]), fold_view(folds, records_by_step), screen_view(folds),
                           confirmations, reproduction_view(runs),
                           implementations_view(records_by_step, load_all(runs.parent / "notebook")),
                           measured.get("layers"), other)
    def write(f) -> None:
        f.write(text.encode())
        os.fchmod(f.fileno(), 0o644)  # the temporary file is private (mkstemp); the report is not

    atomic_write(out, write)
    return [out]

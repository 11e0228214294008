"""The report's charts, drawn here as inline SVG so that the page opens from disk with no network and no
plotting library: a line chart (each step's curves and its learning rate) and the ablation chart of what the
mission judges, step by step. Every coordinate is written with fixed precision, so the bytes are stable."""
from __future__ import annotations

import dataclasses
import html
import math
import statistics

from ..engine.schedule import learning_rate
from ..study.analysis import at_least
from ..study.step import Step
from .format import missing
from .mission import MISSION_GOALS, STRICTER_BAR

ZOOM = (98.5, 99.7)  # percent: the default window of a zoomed chart
# Ten seeds, ten colours; none is red or orange (the floor line, the train curve) or near-black (the mean, the
# test curve), so a seed line is never read as one of those.
SEED_COLORS = ("#1a73e8", "#12a4b4", "#9334e6", "#8c564b", "#2a9d3a", "#d6338a", "#b5a000", "#7f8c9a", "#0b3d91",
               "#a3c94a")
TRAIN_COLOR, TEST_COLOR, FLOOR_COLOR = "#e8710a", "#202124", "#d93025"
MET_COLOR, MISS_COLOR, SEED_STUDY_COLOR = "#137333", "#d93025", "#5f6368"


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

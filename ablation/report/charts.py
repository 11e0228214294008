"""The report's charts, drawn here as inline SVG so that the page opens from disk with no network and no
plotting library: a line chart (each step's curves and its learning rate, a step beside the steps made from it)
and the ablation chart of what the mission judges, step by step, in a wide and a narrow layout. Their text stays
at 9 px or more on a 390 px phone (tests/test_report_browser.py measures it). Every coordinate is written with
fixed precision, so the bytes are stable."""
from __future__ import annotations

import dataclasses
import html
import math
import statistics

from ..engine.schedule import learning_rate
from ..study.analysis import at_least
from ..study.step import Step
from .format import missing
from .mission import MISSION_GOALS

ZOOM = (98.5, 99.7)  # percent: the default window of a zoomed chart
# A step's charts are drawn 420 units wide at 11 px text: on a 390 px phone (about 350 px of page) they shrink
# to 0.83x and their text stays at 9 px or more; on a desktop three fit side by side.
CHART_WIDTH = 420
# Ten seeds, ten colours from the colour-blind-safe sets of Okabe and Ito and of Paul Tol, in the order that keeps
# the first five (what most steps ran) apart under protan-, deutan- and tritanopia (tests/test_report.py simulates
# them); none is red, orange or near-black, so no seed line is read as the floor line, the train curve or the mean.
SEED_COLORS = ("#0072b2", "#66ccee", "#cc79a7", "#332288", "#aa3377", "#009e73", "#aa4499", "#56b4e9", "#228833",
               "#bbbbbb")
TRAIN_COLOR, TEST_COLOR, FLOOR_COLOR = "#e8710a", "#202124", "#d93025"
MET_COLOR, MISS_COLOR, SEED_STUDY_COLOR = "#137333", "#d93025", "#5f6368"
WORST_WIDTH = 2.6  # the worst seed's line, above the others' 1.4
DASHES = (None, "6 3", "2 2", "8 3 2 3", "1 3", "10 4")  # the steps of a family chart differ by dash as well as colour

# Advance widths in em of DejaVu Sans, the widest of the usual sans fonts (Linux's system-ui): a text measured
# here is no narrower on screen anywhere else. Other lower-case letters and digits are about 0.63 em.
_EM = {**dict.fromkeys("ijl.,:;!|' ", 0.32), **dict.fromkeys("ftr()[]-/", 0.4),
       **dict.fromkeys("mw%±≥≤×—MW", 0.98)}


def text_width(text: str, size: float = 11, bold: bool = False) -> float:
    """The estimated width in px of `text` in the charts' font at `size` px."""
    em = sum(_EM.get(c, 0.72 if c.isupper() else 0.63) for c in str(text))
    return em * size * (1.1 if bold else 1.0)


def wrap(text: str, width: float, size: float = 11, bold: bool = False) -> list[str]:
    """`text` broken at spaces into lines no wider than `width` px (a word wider than that gets a line of its own)."""
    lines = [""]
    for word in str(text).split(" "):
        joined = f"{lines[-1]} {word}" if lines[-1] else word
        if lines[-1] and text_width(joined, size, bold) > width:
            lines.append(word)
        else:
            lines[-1] = joined
    return lines


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


def _legend_rows(items: list[tuple], width: float) -> list[list[tuple[float, tuple]]]:
    """Legend items (label first) laid out into rows no wider than `width`: [(x offset, item), ...] per row."""
    rows, x = [[]], 0.0
    for item in items:
        w = 32 + text_width(item[0])
        if x + w > width and rows[-1]:
            rows.append([])
            x = 0.0
        rows[-1].append((x, item))
        x += w
    return rows


def line_chart(title: str, series: list[Series], *, x_range: tuple[float, float], y_range: tuple[float, float],
               x_label: str = "epoch", y_label: str = "", x_ticks: list[float] | None = None,
               y_ticks: list[float] | None = None, bands: list[Band] = (), floor: float | None = None,
               shade_from: float | None = None, log_y: bool = False, width: int = CHART_WIDTH, height: int = 240,
               marks: list[tuple[float, float, str]] = (), hover: str | None = None, unit: str = "",
               subtitle: str = "") -> str:
    """An inline SVG line chart. Values outside y_range are drawn on its edge with a triangle, so a
    zoomed chart never hides them and never lets them push the `floor` line off the picture; the floor
    line is drawn last, above every series, and then `marks`: (x, y, label) points ringed and labelled.
    Non-finite values break their line. The title, and the `subtitle` under it in plain text, wrap onto as many
    lines as they need and the legend into rows; the chart grows taller rather than squeeze its plot.
    `hover`: a format for the values ("{:.2f}"), which each labelled line then carries as data-v="x:value;..."
    for the page's hover script, and `unit` for it to write after them."""
    # (label, colour, dash, stroke width; 0 draws a dot, 8 a band swatch)
    legend = [(s.label, s.color, s.dash, s.width) for s in series if s.label] + [(b.label, b.color, None, 8) for b in bands]
    if floor is not None:
        legend.append((f"{floor:g} %", FLOOR_COLOR, "5 3", 1.5))
    if shade_from is not None:
        legend.append(("judged epochs", "#bdc1c6", None, 8))
    left, right, bottom = 56, 14, 36
    titles = [("title", line) for line in wrap(title, width - 8, 12.5, bold=True)]
    titles += [("subtitle", line) for line in (wrap(subtitle, width - 8) if subtitle else [])]
    rows = _legend_rows(legend, width - left - 4)
    top = 15 + 15 * len(titles) + 15 * len(rows)
    height = max(height, top + bottom + 140)  # a long title or legend adds height, never takes it from the plot
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

    data = f' data-hover="{_esc(unit)}"' if hover else ""
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{_esc(title)}"{data}>', f'<title>{_esc(title + (": " + subtitle if subtitle else ""))}</title>']
    out += [f'<text class="{kind}" x="4" y="{16 + 15 * i}">{_esc(line)}</text>' for i, (kind, line) in enumerate(titles)]
    for r, row in enumerate(rows):
        ly = 16 + 15 * len(titles) + 15 * r
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
                current.append((X(x), *Y(y), x, y))
        dash_attr = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        for seg in segments + [current]:
            if len(seg) > 1 and s.width > 0:
                # The values for the hover script; the <title> names the line where there is no script.
                data = (f' data-label="{_esc(s.label)}" data-v="{";".join(f"{x:g}:{hover.format(y)}" for *_, x, y in seg)}"'
                        if hover and s.label else "")
                name = f"<title>{_esc(s.label)}</title>" if s.label else ""
                out.append(f'<polyline points="{" ".join(f"{_f(px)},{_f(py)}" for px, py, *_ in seg)}" fill="none" '
                           f'stroke="{s.color}" stroke-width="{s.width:g}" opacity="{s.opacity:g}"{dash_attr} '
                           f'stroke-linejoin="round"{data}>{name}</polyline>')
            for px, py, edge, *_ in seg:
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
        out.append(f'<circle cx="{_f(px)}" cy="{_f(py)}" r="5.5" fill="none" stroke="#202124" stroke-width="1.5"/>')
        # Beside the ring, on whichever side the label fits inside the chart.
        w = text_width(label, bold=True)
        tx = px + 9 if px + 9 + w <= width - 2 else max(px - 9 - w, 2)
        out.append(f'<text class="mark" x="{_f(tx)}" y="{_f(py + (14 if py < top + ph - 20 else -8))}">{_esc(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def ablation_range(values: list[float], floor: float) -> tuple[float, float]:
    """The accuracy axis of the ablation chart: the data, cut at 0.6 % below the floor, so that a step far
    under it (drawn on the edge) does not squeeze the 0.1 % differences that decide the rest."""
    values = [v for v in values if not missing(v)] + [floor]
    lo = max(min(values), floor - 0.6)
    return math.floor(lo * 10 - 0.5) / 10, math.ceil(max(values) * 10 + 0.5) / 10


def _cross(x: float, y: float, r: float, color: str, extra: str = "") -> str:
    """An x: a seed below the floor, told from a seed that holds (a dot) by its shape as well as its colour."""
    return (f'<path d="M{_f(x - r)},{_f(y - r)} L{_f(x + r)},{_f(y + r)} M{_f(x - r)},{_f(y + r)} L{_f(x + r)},{_f(y - r)}" '
            f'stroke="{color}" stroke-width="2" stroke-linecap="round">{extra}</path>')


def _ablation_legend(x0: float, y0: float, width: float) -> tuple[list[str], float]:
    """The ablation chart's legend, wrapped into rows within `width` from (x0, y0); its elements and the y
    below it."""
    floor = MISSION_GOALS.accuracy_floor
    items = [("circle", MET_COLOR, f"seed holds ≥ {floor:g} %"), ("cross", MISS_COLOR, "seed below"),
             ("tick", "#202124", "mean"), ("diamond", SEED_STUDY_COLOR, "seed study (best epoch of one run)"),
             ("floor", FLOOR_COLOR, f"{floor:g} % (the mission)")]
    out = []
    for r, row in enumerate(_legend_rows([(label, kind, color) for kind, color, label in items], width)):
        y = y0 + 15 * r
        for dx, (label, kind, color) in row:
            x = x0 + dx + 4
            if kind == "circle":
                out.append(f'<circle cx="{_f(x + 4)}" cy="{_f(y - 4)}" r="3.5" fill="{color}"/>')
            elif kind == "cross":
                out.append(_cross(x + 4, y - 4, 3.5, color))
            elif kind == "tick":
                out.append(f'<rect x="{_f(x + 2.5)}" y="{_f(y - 10)}" width="3" height="12" fill="{color}"/>')
            elif kind == "diamond":
                out.append(f'<path d="M{_f(x + 4)},{_f(y - 9)} L{_f(x + 9)},{_f(y - 4)} L{_f(x + 4)},{_f(y + 1)} '
                           f'L{_f(x - 1)},{_f(y - 4)} Z" fill="#fff" stroke="{color}" stroke-width="1.5"/>')
            else:
                out.append(f'<line x1="{_f(x - 4)}" y1="{_f(y - 4)}" x2="{_f(x + 12)}" y2="{_f(y - 4)}" stroke="{color}" '
                           f'stroke-width="1.5" stroke-dasharray="5 3"/>')
            out.append(f'<text x="{_f(x + 15)}" y="{_f(y)}">{_esc(label)}</text>')
    return out, y0 + 15 * (r + 1)


def _below_axis(r: dict, lo: float) -> bool:
    return bool(r["lowests"]) and min(v for _, v in r["lowests"]) < lo


def _accuracy_marks(r: dict, AX, a0: float, cy: float, lo: float, note_at: tuple[float, float]) -> list[str]:
    """One step's row of the ablation chart, on the accuracy axis AX: the seed study's diamond, each seed's lowest
    of the last epochs (a dot where it holds the floor, an x where not; a ◂ on the left edge at a0 where it is
    below the axis, written out at `note_at`), and their mean."""
    floor, out = MISSION_GOALS.accuracy_floor, []
    if not missing(r["seed_best"]):
        sx = AX(r["seed_best"])
        out.append(f'<path d="M{_f(sx)},{_f(cy - 6)} L{_f(sx + 5)},{_f(cy)} L{_f(sx)},{_f(cy + 6)} L{_f(sx - 5)},{_f(cy)} Z" '
                   f'fill="#fff" stroke="{SEED_STUDY_COLOR}" stroke-width="1.5"><title>seed study: '
                   f'{r["seed_best"]:.2f} %</title></path>')
    if not r["lowests"]:
        return out + [f'<text class="tick" x="{a0 + 8}" y="{_f(cy + 4)}">no runs</text>']
    for seed, v in r["lowests"]:
        holds = at_least(v, floor)
        color, title = MET_COLOR if holds else MISS_COLOR, f"<title>seed {seed}: {v:.2f} %</title>"
        if v < lo:
            out.append(f'<path d="M{_f(a0 + 1)},{_f(cy)} L{_f(a0 + 7)},{_f(cy - 4)} L{_f(a0 + 7)},{_f(cy + 4)} Z" '
                       f'fill="{color}" opacity="0.8">{title}</path>')
        elif holds:
            out.append(f'<circle cx="{_f(AX(v))}" cy="{_f(cy)}" r="3.5" fill="{color}" opacity="0.75">{title}</circle>')
        else:
            out.append(_cross(AX(v), cy, 3.5, color, title))
    mean = statistics.fmean(v for _, v in r["lowests"])
    out.append(f'<rect x="{_f(AX(mean) - 1.5)}" y="{_f(cy - 8)}" width="3" height="16" fill="#202124">'
               f'<title>mean {mean:.2f} %</title></rect>')
    if _below_axis(r, lo):  # off the axis: say where
        low = min(v for _, v in r["lowests"])
        out.append(f'<text class="tick" x="{_f(note_at[0])}" y="{_f(note_at[1])}">lowest {low:.2f} %, mean {mean:.2f} %</text>')
    return out


def ablation_chart(rows: list[dict]) -> str:
    """What the mission judges, per step: each seed's lowest test accuracy over the last epochs (a green dot where
    it holds the floor, a red x where not), their mean, the seed study's one figure, beside the parameter count.
    Two layouts of the same marks: a wide one with the parameters beside, and a narrow one (for a phone) with
    each step's name and parameters on a line above its row; the page's CSS shows one of them."""
    return ablation_chart_wide(rows) + "\n" + ablation_chart_narrow(rows)


def _ablation_axis(rows: list[dict]) -> tuple[float, float]:
    return ablation_range([v for r in rows for _, v in r["lowests"]] + [r["seed_best"] for r in rows],
                          MISSION_GOALS.accuracy_floor)


def ablation_chart_wide(rows: list[dict]) -> str:
    floor, last = MISSION_GOALS.accuracy_floor, MISSION_GOALS.last_epochs
    row_h, top, label_w, acc_w, gap, par_w = 24, 62, 150, 640, 40, 300
    width, height = label_w + acc_w + gap + par_w + 24, top + row_h * len(rows) + 34
    a0, p0 = label_w, label_w + acc_w + gap
    lo, hi = _ablation_axis(rows)
    max_params = max([r["params"] or 0 for r in rows] + [10_000])
    p_ticks = nice_ticks(0, max_params, 4)
    p_hi = math.ceil(max_params / p_ticks[1]) * p_ticks[1]

    def AX(v: float) -> float:
        return a0 + (min(max(v, lo), hi) - lo) / (hi - lo) * acc_w

    def PX(v: float) -> float:
        return p0 + v / p_hi * par_w

    bottom = top + row_h * len(rows)
    out = [f'<svg class="chart ablation-wide" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="lowest test accuracy of the last {last} epochs and parameters per step">',
           f"<title>Lowest test accuracy of the last {last} epochs, per seed, and parameters per step</title>",
           f'<text class="title" x="{a0}" y="16">Lowest test accuracy of the last {last} epochs, % (each seed, their mean)</text>',
           f'<text class="title" x="{p0}" y="16">Parameters</text>']
    out += _ablation_legend(a0 - 4, 35, acc_w + gap + par_w)[0]
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
    out.append(f'<line x1="{_f(AX(floor))}" y1="{top}" x2="{_f(AX(floor))}" y2="{bottom}" stroke="{FLOOR_COLOR}" '
               f'stroke-width="1.5" stroke-dasharray="5 3"/>')
    for i, r in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        out.append(f'<text x="{a0 - 8}" y="{_f(cy + 4)}" text-anchor="end">{_esc(r["name"])}</text>')
        if r["params"] is not None:
            over = r["params"] > r["max_params"]
            out.append(f'<rect x="{p0}" y="{_f(cy - 7)}" width="{_f(PX(r["params"]) - p0)}" height="14" '
                       f'class="{"bar over" if over else "bar"}"/>')
            # Inside the bar's end, where it cannot collide with the 10,000 line.
            out.append(f'<text x="{_f(PX(r["params"]) - 5)}" y="{_f(cy + 4)}" text-anchor="end">{r["params"]:,}</text>')
        out += _accuracy_marks(r, AX, a0, cy, lo, (a0 + 12, cy + 4))
    out.append(f'<line x1="{_f(PX(MISSION_GOALS.max_params + 1))}" y1="{top}" x2="{_f(PX(MISSION_GOALS.max_params + 1))}" '
               f'y2="{bottom}" stroke="{FLOOR_COLOR}" stroke-width="1.5" stroke-dasharray="5 3"/>')
    out.append(f'<text class="tick" x="{_f(PX(MISSION_GOALS.max_params + 1))}" y="{top - 4}" text-anchor="middle">'
               f'{MISSION_GOALS.max_params + 1:,}</text>')
    out.append("</svg>")
    return "\n".join(out)


def ablation_chart_narrow(rows: list[dict], width: int = 360) -> str:
    """The ablation chart for a phone: drawn 360 units wide, so that a 390 px screen shows it at about its size. Each
    step takes two lines: its name and parameter count, then its marks on an accuracy axis as wide as the chart; a
    step with seeds below the axis has a line between them that says where."""
    floor, last = MISSION_GOALS.accuracy_floor, MISSION_GOALS.last_epochs
    a0, a1 = 10, width - 10
    lo, hi = _ablation_axis(rows)
    heights = [42 + 14 * _below_axis(r, lo) for r in rows]

    def AX(v: float) -> float:
        return a0 + (min(max(v, lo), hi) - lo) / (hi - lo) * (a1 - a0)

    title = f"Lowest test accuracy of the last {last} epochs, % (each seed, their mean), and parameters per step"
    titles = wrap(title, width - 8, 12.5, bold=True)
    head = [f'<text class="title" x="4" y="{16 + 15 * i}">{_esc(line)}</text>' for i, line in enumerate(titles)]
    legend, y = _ablation_legend(0, 19 + 15 * len(titles), width - 8)
    note = wrap(f"axis {lo:g}–{hi:g} %; a value below it is drawn on its left edge as ◂ and written out", width - 8)
    head += legend + [f'<text class="tick" x="4" y="{y + 15 * i}">{_esc(line)}</text>' for i, line in enumerate(note)]
    top = y + 15 * len(note) + 16  # the upper tick labels sit in the last 16 units
    starts = [top + sum(heights[:i]) for i in range(len(rows))]
    bottom = top + sum(heights)
    height = bottom + 22
    out = [f'<svg class="chart ablation-narrow" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="lowest test accuracy of the last {last} epochs and parameters per step">',
           f"<title>Lowest test accuracy of the last {last} epochs, per seed, and parameters per step</title>", *head]
    out.extend(f'<rect x="0" y="{starts[i]}" width="{width}" height="{heights[i]}" fill="#f8f9fa"/>'
               for i in range(1, len(rows), 2))
    ticks = nice_ticks(lo, hi, 4)
    for t in ticks:
        out.append(f'<line class="grid" x1="{_f(AX(t))}" y1="{top}" x2="{_f(AX(t))}" y2="{bottom}"/>')
        # Above the first row and below the last, so a reader scrolling a long chart finds a scale near either end.
        for ty in (top - 5, bottom + 15):
            out.append(f'<text class="tick" x="{_f(AX(t))}" y="{ty}" text-anchor="middle">{tick_label(t)}</text>')
    out.append(f'<line x1="{_f(AX(floor))}" y1="{top}" x2="{_f(AX(floor))}" y2="{bottom}" stroke="{FLOOR_COLOR}" '
               f'stroke-width="1.5" stroke-dasharray="5 3"/>')
    for r, y0, h in zip(rows, starts, heights):
        out.append(f'<text x="4" y="{y0 + 14}">{_esc(r["name"])}</text>')
        if r["params"] is not None:
            over = r["params"] > r["max_params"]
            words = f"{r['params']:,} params" + (f" (over {r['max_params']:,})" if over else "")
            out.append(f'<text class="{"over" if over else "tick"}" x="{width - 4}" y="{y0 + 14}" '
                       f'text-anchor="end">{words}</text>')
        out += _accuracy_marks(r, AX, a0, y0 + h - 13, lo, (a0 + 12, y0 + 28))
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


def _accuracy_range(curves: list[tuple[tuple[float, float], ...]], floor: float, after: int) -> tuple[float, float]:
    """A test-accuracy axis scaled to the epochs after `after` and to the floor: the early epochs, far below, are
    drawn on the bottom edge as triangles, and the point that decides the verdict is always inside."""
    later = [v for points in curves for e, v in points if e > after]
    lo, hi = nice_range(later + [floor], pad=0.08)
    return lo, min(hi, 100.0)


def train_label(step: Step) -> str:
    """What the train curves measured: the running accuracy (or loss) of the epoch's batches, as trained."""
    return (f"train ({'augmented' if step.augment.active else 'no augmentation'}, "
            f"{f'dropout {step.dropout:g}' if step.dropout else 'no dropout'})")


def step_charts(step: Step, records: list[dict]) -> list[str]:
    epochs = max([step.epochs] + [len(r["history"]) for r in records])
    x_range, x_ticks = (1, max(epochs, 2)), _epoch_ticks(epochs)
    judged = step.epochs - step.goals.last_epochs + 0.5 if step.epochs > step.goals.last_epochs else None
    charts = []
    if records:
        floor, last = step.goals.accuracy_floor, step.goals.last_epochs
        tails = [(row["test_acc"], r["seed"], row["epoch"]) for r in records for row in r["history"][-last:]]
        low, worst, at = min(tails, key=lambda t: (t[0], t[1], t[2])) if tails else (None, None, None)
        lines = [Series(f"seed {r['seed']}" + (f" (diverged at {r['diverged_at']})" if r["diverged_at"] else "")
                        + (", the lowest" if r["seed"] == worst else ""),
                        tuple((row["epoch"], row["test_acc"]) for row in r["history"]),
                        SEED_COLORS[i % len(SEED_COLORS)], width=WORST_WIDTH if r["seed"] == worst else 1.4,
                        opacity=1 if r["seed"] == worst else 0.85)
                 for i, r in enumerate(records)]
        # The worst seed is drawn last, above the other seeds and the mean
        seeds = [line for line, r in zip(lines, records) if r["seed"] != worst]
        worst_line = [line for line, r in zip(lines, records) if r["seed"] == worst]
        stats = _mean_std_by_epoch(records, "test_acc")
        mean = Series("mean", tuple((e, m) for e, m, _ in stats), "#202124", width=2.2)
        # one sd either side of the mean, named so: "±" on this page is a 95 % interval
        band = [Band("sd band about the mean", tuple((e, m - s, m + s) for e, m, s in stats), "#202124")] if len(records) > 1 else []
        lo, hi = _accuracy_range([s.points for s in lines], floor, epochs // 3)
        marks = [(at, low, f"lowest: {low:.2f} % (seed {worst}, epoch {at})")] if tails else []
        charts.append(line_chart(f"Test accuracy per epoch, each seed ({lo:g}–{hi:g} %)",
                                 seeds + [mean] + worst_line, bands=band, floor=floor, shade_from=judged, marks=marks,
                                 x_range=x_range, x_ticks=x_ticks, y_range=(lo, hi), y_label="test accuracy, %",
                                 hover="{:.2f}", unit=" %"))
        train, test = _mean_std_by_epoch(records, "train_acc"), _mean_std_by_epoch(records, "test_acc")
        # Epoch 1 is often far below the rest; leaving it out of the range keeps the later gap readable.
        later = [m for e, m, _ in train + test if e > 1] or [m for _, m, _ in train + test]
        y_lo, y_hi = nice_range(later)
        charts.append(line_chart("Train vs test accuracy (mean over seeds)",
                                 [Series(train_label(step), tuple((e, m) for e, m, _ in train), TRAIN_COLOR, 2),
                                  Series("test", tuple((e, m) for e, m, _ in test), TEST_COLOR, 2)],
                                 x_range=x_range, x_ticks=x_ticks, y_range=(y_lo, min(y_hi, 100.0)), y_label="accuracy, %",
                                 hover="{:.2f}", unit=" %"))
        train, test = _mean_std_by_epoch(records, "train_loss"), _mean_std_by_epoch(records, "test_loss")
        losses = [m for _, m, _ in train + test if m > 0]
        if losses:
            y_range = (min(losses) / 1.5, max(losses) * 1.5)
            ticks = log_ticks(*y_range)
            ticks = ticks if len(ticks) > 1 else nice_ticks(*y_range, 3)  # a narrow range may hold one 1-2-5 value
            charts.append(line_chart("Loss (mean over seeds, log scale)",
                                     [Series(train_label(step), tuple((e, m) for e, m, _ in train), TRAIN_COLOR, 2),
                                      Series("test", tuple((e, m) for e, m, _ in test), TEST_COLOR, 2)],
                                     x_range=x_range, x_ticks=x_ticks, y_range=y_range, log_y=True,
                                     y_ticks=ticks, y_label="cross-entropy", hover="{:.4f}"))
    charts.append(lr_chart(step, records, x_range, x_ticks))
    return charts


def family_chart(step: Step, records: list[dict], children: list[tuple[Step, list[dict]]]) -> str:
    """The step and the steps made from it, each a line of its mean test accuracy per epoch over its own seeds,
    the judged epochs shaded: what each child changed, seen on the same axis. Children without runs are left
    out; no chart (an empty text) when none has any, or the step itself has none."""
    children = [(child, rs) for child, rs in children if rs]
    if not records or not children:
        return ""
    family = [(step, records, f"{step.name} (this step)")] + [(c, rs, c.name) for c, rs in children]
    means = [[(e, m) for e, m, _ in _mean_std_by_epoch(rs, "test_acc")] for _, rs, _ in family]
    epochs = max(max(s.epochs, len(r["history"])) for s, rs, _ in family for r in rs)
    floor, last = step.goals.accuracy_floor, step.goals.last_epochs
    lo, hi = _accuracy_range(means, floor, epochs - last)  # zoomed to the judged epochs, where the steps differ
    lines = [Series(f"{label}, {len(rs)} seeds", tuple(points),
                    "#202124" if i == 0 else SEED_COLORS[(i - 1) % len(SEED_COLORS)], width=2.4 if i == 0 else 1.8,
                    dash=DASHES[i % len(DASHES)])
             for i, ((_, rs, label), points) in enumerate(zip(family, means))]
    judged = step.epochs - last + 0.5 if step.epochs > last else None
    return line_chart("This step and its children: mean test accuracy", lines,
                      floor=floor, shade_from=judged, x_range=(1, max(epochs, 2)), x_ticks=_epoch_ticks(epochs),
                      y_range=(lo, hi), y_label="test accuracy, %", hover="{:.2f}", unit=" %")


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
    return line_chart("Learning rate", [Series("schedule", tuple(curve), "#5f6368", 1.8)] + logged,
                      subtitle=step.describe_lr(), x_range=(0, x_range[1]), x_ticks=[0] + x_ticks,
                      y_range=(0, hi * 1.08), x_label="epochs trained", y_label="learning rate")

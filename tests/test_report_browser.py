"""The report in a real browser (headless Chromium): at a desktop and a phone width the page never scrolls
sideways and the verdict is on the first screen; every sortable numeric column sorts by its number.

A script appended to a copy of the page measures it and writes its answer as JSON into the page, which
`chromium --dump-dom` prints; nothing but Chromium is needed. Skipped where Chromium is not installed.
"""
from __future__ import annotations

import html
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from ablation import report

from test_report import runs  # noqa: F401  (the fixture: fake records of two steps)

# One worker measures every page once at each width (the `measured` fixture), and every test reads that measurement:
# a Chromium start costs seconds.
pytestmark = [pytest.mark.fast, pytest.mark.xdist_group("browser")]

CHROMIUM = Path(os.environ.get("ABLATION_CHROMIUM", "/usr/bin/chromium"))
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs headless Chromium at {CHROMIUM} "
                                    "(apt-get install chromium, or set $ABLATION_CHROMIUM)")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
WIDTHS = {"desktop": (1400, 900), "phone": (390, 844)}

# Measures first (before any click changes the page), then clicks every numeric heading of every sortable
# table twice and reads the data-sort values of that column after each click. The page runs in a frame of
# the size measured (headless Chromium's window is at least 500 px wide) and posts its answer to the
# wrapper, which writes it where --dump-dom prints it.
MEASURE = """
<script>
(() => {
  const de = document.documentElement, out = {};
  out.scroll_width = de.scrollWidth; out.client_width = de.clientWidth;
  out.height = de.scrollHeight; out.inner_height = window.innerHeight;
  const v = document.getElementById("verdict-box") || document.querySelector(".verdict-box");
  if (v) { const r = v.getBoundingClientRect(); out.verdict = [r.top, r.bottom]; }
  // what sticks out of the page, unless a box that scrolls (or clips) on its own holds it
  const held = e => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement)
                        if (getComputedStyle(a).overflowX !== "visible") return true; return false; };
  const wider = () => [...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > de.clientWidth + 1
      && !held(e)).slice(0, 5).map(e => `${e.tagName} ${e.id} ${(e.textContent || "").trim().slice(0, 40)}`);
  out.wider = wider();
  // every section's link in the menu on screen, at the top of the page (none hidden off its edge)
  out.menu = [...document.querySelectorAll("nav.sections a")].map(a => { const r = a.getBoundingClientRect();
    return [a.textContent, r.left >= 0 && r.right <= de.clientWidth + 1 && r.bottom <= window.innerHeight]; });
  // the family filter: each button, the families of the rows it leaves shown
  const buttons = [...document.querySelectorAll("#family-filter button")];
  out.filter = buttons.map(b => { b.click(); return {family: b.dataset.family,
    shown: [...document.querySelectorAll("#all-steps tbody tr")].filter(r => !r.hidden).map(r => r.dataset.family)}; });
  if (buttons.length) buttons[0].click();
  // Every chart, folds opened: the smallest text on screen (font size times the chart's scale, in CSS px) and
  // any text that sticks out of its chart. Charts hidden at this width (display: none) are left out.
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  out.open_scroll_width = de.scrollWidth; out.open_wider = wider();
  out.charts = [...document.querySelectorAll("svg.chart")].filter(svg => svg.getClientRects().length).map(svg => {
    const box = svg.getBoundingClientRect(), texts = [...svg.querySelectorAll("text")];
    const px = t => { const m = t.getScreenCTM(); return parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b); };
    const sizes = texts.map(t => [px(t), t.textContent]).sort((a, b) => a[0] - b[0]);
    const out_of = texts.filter(t => { const r = t.getBoundingClientRect();
      return r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1; });
    return {title: (svg.querySelector("title") || {}).textContent, cls: svg.getAttribute("class"),
            smallest: sizes[0] || null, outside: out_of.map(t => t.textContent)};
  });
  // The hover script: the pointer on the third point of a chart's first curve; what the tip says, and what it
  // may say (each curve through that point: its label, the epoch, the value)
  const svg = [...document.querySelectorAll("svg.chart[data-hover]")].find(s => s.getClientRects().length);
  if (svg) {
    const xy = s => s.split(",").map(Number), at = xy(svg.querySelector("polyline[data-v]").getAttribute("points").split(" ")[2]);
    const c = new DOMPoint(...at).matrixTransform(svg.getScreenCTM());
    svg.dispatchEvent(new PointerEvent("pointermove", {clientX: c.x, clientY: c.y, bubbles: true}));
    const tip = document.querySelector(".chart-tip");
    out.hover = {tip: tip && !tip.hidden ? tip.textContent : null, expected: []};
    svg.querySelectorAll("polyline[data-v]").forEach(p => p.getAttribute("points").split(" ").forEach((s, i) => {
      const [e, v] = p.dataset.v.split(";")[i].split(":");
      if (Math.hypot(xy(s)[0] - at[0], xy(s)[1] - at[1]) < 0.5) out.hover.expected.push(`${p.dataset.label}, epoch ${e}: ${v}${svg.dataset.hover}`);
    }));
  }
  document.querySelectorAll("details").forEach(d => { d.open = false; });
  out.sorts = [];
  document.querySelectorAll("table.sortable").forEach((table, t) => {
    [...table.tHead.rows[0].cells].forEach((th, col) => {
      if (!th.classList.contains("n")) return;
      const keys = () => [...table.tBodies[0].rows].map(r => r.cells[col].dataset.sort);
      th.click(); const up = keys(); th.click(); const down = keys();
      out.sorts.push({table: t, column: th.textContent.trim(), up, down});
    });
  });
  parent.postMessage(JSON.stringify(out), "*");
})();
</script>
"""
WRAPPER = """<!doctype html><html><body style="margin:0">
<pre id="result"></pre>
<script>addEventListener("message", e => {{ document.getElementById("result").textContent = e.data; }});</script>
<iframe src="{src}" style="width:{width}px;height:{height}px;border:0;display:block"></iframe>
</body></html>"""


def measure(page: Path, width: int, height: int, tmp: Path) -> dict:
    """Open `page` in headless Chromium in a frame of width x height px and return what MEASURE found."""
    copy = tmp / f"measured-{width}.html"
    copy.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    wrapper = tmp / f"wrapper-{width}.html"
    wrapper.write_text(WRAPPER.format(src=copy.name, width=width, height=height))
    done = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp / f'profile-{width}'}",
                           f"--window-size={max(width, 500) + 40},{height + 200}", "--virtual-time-budget=10000",
                           "--dump-dom", wrapper.as_uri()],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp)})
    found = re.search(r'<pre id="result">(.+?)</pre>', done.stdout, re.S)
    assert found, f"no measurement in Chromium's output; stderr: {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def rendered(runs, tmp_path_factory) -> Path:  # noqa: F811
    return report.render_files(runs, tmp_path_factory.mktemp("page") / "ablation.html")[0]


COMMITTED = Path(__file__).resolve().parents[1] / "reports" / "ablation.html"
MAX_HEIGHT = 25_000  # px at 1400 px wide, with every fold closed


@pytest.fixture(scope="module")
def measured(rendered, tmp_path_factory):
    """measured(which, device): what MEASURE found on the fake records' page or the committed report at that
    width, measured once for the module (MEASURE reads everything before it clicks, and clicks alike every time)."""
    found = {}

    def get(which: str, device: str) -> dict:
        page = rendered if which == "fake records" else COMMITTED
        if not page.is_file():
            pytest.skip(f"no {page}")
        if (which, device) not in found:
            found[which, device] = measure(page, *WIDTHS[device], tmp_path_factory.mktemp("measure"))
        return found[which, device]

    return get


@needs_chromium
@pytest.mark.parametrize("device", list(WIDTHS))
@pytest.mark.parametrize("which", ["fake records", "committed report"])
def test_no_sideways_scroll_and_the_verdict_on_the_first_screen(measured, which, device):
    m = measured(which, device)
    assert m["scroll_width"] <= m["client_width"], f"the page scrolls sideways; wider than the page: {m['wider']}"
    assert m["open_scroll_width"] <= m["client_width"], f"with every fold open, wider than the page: {m['open_wider']}"
    assert m["menu"] and all(on_screen for _, on_screen in m["menu"]), f"a section's link is off the screen: {m['menu']}"
    assert m["verdict"][0] >= 0 and m["verdict"][1] <= m["inner_height"], m["verdict"]
    if device == "desktop":
        assert m["height"] < MAX_HEIGHT


def as_number(key: str | None) -> float:
    return float("inf") if key in (None, "") else float(key)


@needs_chromium
@pytest.mark.parametrize("which", ["fake records", "committed report"])
def test_each_numeric_column_sorts_by_its_number(measured, which):
    m = measured(which, "desktop")
    assert m["sorts"], "no sortable numeric column"
    for s in m["sorts"]:
        assert all(k is not None for k in s["up"]), f"{s['column']}: a cell without data-sort"
        filled = lambda keys: [as_number(k) for k in keys if k != ""]
        assert filled(s["up"]) == sorted(filled(s["up"])), s
        assert filled(s["down"]) == sorted(filled(s["down"]), reverse=True), s
        assert s["up"][len(filled(s["up"])):] == [""] * (len(s["up"]) - len(filled(s["up"]))), "empty cells sort last"


MIN_TEXT_PX = 9  # CSS px: the smallest chart text on screen at a phone's width (issue 30)


@needs_chromium
@pytest.mark.parametrize("device", list(WIDTHS))
@pytest.mark.parametrize("which", ["fake records", "committed report"])
def test_chart_text_is_readable_and_inside_its_chart(measured, which, device):
    """Every chart shown (folds opened): at a phone's width no text under 9 px on screen; at either width no text
    sticking out of its chart; one layout of the ablation chart, the one drawn for that width."""
    m = measured(which, device)
    assert m["charts"], "no chart shown"
    if device == "phone":
        small = [(c["title"], c["smallest"]) for c in m["charts"] if c["smallest"] and c["smallest"][0] < MIN_TEXT_PX]
        assert not small, f"text under {MIN_TEXT_PX} px at {WIDTHS[device][0]} px: {small[:3]}"
    assert not [(c["title"], c["outside"]) for c in m["charts"] if c["outside"]]
    layouts = [c["cls"] for c in m["charts"] if "ablation" in c["cls"]]
    assert layouts == [f"chart ablation-{'narrow' if device == 'phone' else 'wide'}"], layouts


@needs_chromium
def test_pointing_at_a_curve_shows_its_label_epoch_and_value(measured):
    m = measured("fake records", "desktop")
    assert m["hover"]["expected"] and m["hover"]["tip"] in m["hover"]["expected"], m["hover"]


@needs_chromium
def test_the_family_filter_shows_one_family_of_steps_or_all(measured):
    m = measured("fake records", "desktop")
    families = [f["family"] for f in m["filter"]]
    assert families[0] == "" and len(families) > 2  # "all", then each family
    everything = m["filter"][0]["shown"]
    assert len(everything) == len(report.render.STEPS)
    for f in m["filter"][1:]:
        assert f["shown"] and set(f["shown"]) == {f["family"]} and len(f["shown"]) == everything.count(f["family"])

"""The report: reports/ablation.html (one self-contained file) and reports/ablation.md, from the run records.

The HTML answers "does the final step meet the mission, by how much, and what did each step change?": the
verdict first with its margin (in percent and in test images), one sortable table of all steps (each numeric
cell carries its raw number in data-sort), the ablation chart of what the mission judges (each seed's lowest
accuracy of the last epochs), a section per step whose prose folds away, the validation runs, the final
model's mistakes and the provenance of every number. Green and red mark the mission's goals only; a step's
stricter goals of its own are said in words. Charts are inline SVG and digit images are PNGs, both drawn
here, so the file opens from disk with no network and no plotting library. Rendering is deterministic: the
same records (and bench.json) give the same bytes, so a report diff shows only what the records changed.

The report reads records and never trains. Its modules: format.py (numbers and text), mission.py (the
verdict), steps.py (each step's view), charts.py (the SVG charts), checks.py (validation, folds, screens, a
second implementation, a reproduction), mistakes.py (the final model's mistakes, drawn as PNGs),
provenance.py (where the numbers came from), render.py (the templates' context and the files written) and
study.py (the table of screens in STUDY.md).
This package re-exports the names the command line and the tests use.
"""
from .charts import ZOOM, Series, line_chart
from .checks import fold_view, reproduction_view, screen_view, validation_view
from .format import breakable, count, num, signed
from .mission import margin
from .mistakes import MAX_MISTAKES_SHOWN, png_gray
from .render import OTHER_SETUPS, render_files, render_html, render_markdown, report_path
from .steps import measured_result, step_verdict

__all__ = ["MAX_MISTAKES_SHOWN", "OTHER_SETUPS", "ZOOM", "Series", "breakable", "count", "fold_view", "line_chart",
           "margin", "measured_result", "num", "png_gray", "render_files", "render_html", "render_markdown",
           "report_path", "reproduction_view", "screen_view", "signed", "step_verdict", "validation_view"]

"""The screens' history in reports/STUDY.md, generated from their records.

STUDY.md tells the story in words; the table of every screen (a variant against its step on the held-out
folds) is written between two markers from the validation records, the same rows as the report's "Screens
across folds", so the story's list of what was tried cannot drift from what ran. `python -m ablation report`
rewrites it; tests/test_words.py checks that the committed STUDY.md holds what the committed records give.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..runs.records import atomic_write
from .checks import screen_view

BEGIN = "<!-- screens: generated from reports/validation and reports/validation-folds by `python -m ablation report`; edit the records, not this table -->"
END = "<!-- /screens -->"


def screens_markdown(folds: dict[int, dict[str, list[dict]]]) -> str:
    """Every screen as a Markdown table, in the order the report lists them (by step, then variant)."""
    rows = screen_view(folds)
    lines = [BEGIN, "",
             f"{len(rows)} screens, {sum(r['passed'] for r in rows)} passed. Δ is the variant's final held-out accuracy "
             "minus the step's as registered, per fold (and seed); the verdict is the rule's (`screen.Rule`).", "",
             "| step | variant (`--set`) | params | pairs | Δ final, per fold | mean Δ [95 % CI] | ahead | Δ lowest of last 5 | verdict |",
             "|---|---|---:|---:|---|---|---:|---:|---|"]
    for r in rows:
        word = r["verdict"].split(":")[0]
        lines.append(f"| {r['base']} | `{r['overrides']}` | {r['params']} | {r['n']} | {r['deltas']} | {r['mean']} {r['ci']} "
                     f"| {r['ahead']} | {r['min_delta']} | {'**' + word + '**' if r['passed'] else word} |")
    return "\n".join(lines + ["", END])


def with_screens(study: str, folds: dict[int, dict[str, list[dict]]]) -> str:
    """`study` (STUDY.md's text) with the part between the markers replaced by screens_markdown(folds); a text
    without the markers is returned as it is (a user's copy of the project may have dropped them)."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    return pattern.sub(lambda _: screens_markdown(folds), study, count=1)


def update_study(path: Path, folds: dict[int, dict[str, list[dict]]]) -> bool:
    """Rewrite the screens' table in the STUDY.md at `path`; True when its text changed."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    new = with_screens(text, folds)
    if new != text:  # as every file the project writes: whole or not at all (a hand-written document)
        atomic_write(path, lambda f: f.write(new.encode("utf-8")))
    return new != text

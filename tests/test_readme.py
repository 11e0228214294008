"""The README stays a short entry point whose names all resolve in a fresh clone."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_short():
    assert len(README.splitlines()) < 120


def test_every_path_the_readme_names_is_in_the_repository():
    named = set(re.findall(r"(?<![\w/.])((?:\.\./|\.ci/|ablation/|reports/|tests/)[\w./-]*\w)", README))
    assert named, "no paths found: the pattern is stale"
    missing = sorted(p for p in named if "<" not in p and not (ROOT / p).exists())
    assert not missing, f"named in the README but not in a clone: {missing}"
    assert "../" not in README  # nothing outside the clone


def test_the_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in README

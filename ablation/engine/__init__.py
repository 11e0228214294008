"""The engine: data, augmentation, models and training, the only code whose floats make records.

Its identity is every file of this folder: a record's provenance carries their hash, and an uncommitted
edit to any of them marks a record made meanwhile dirty.
"""
from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..study.step import Step

ENGINE = Path(__file__).resolve().parent


def engine_files() -> list[Path]:
    return sorted(ENGINE.glob("*.py"))


@lru_cache(maxsize=1)
def source_hash() -> str:
    """SHA-256 (first 16 hex digits) over the engine's source files, in a fixed order. Kept in provenance to
    say which code made a record; whether a record is current is its generation's (records.GENERATION),
    which the goldens keep honest."""
    digest = hashlib.sha256()
    for path in engine_files():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ENGINE, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "."))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"commit": commit or None, "dirty": dirty if commit else None}


@dataclass
class RunResult:
    """One seed's run, as train.train_many returns it: what this module writes to disk."""

    step: Step
    seed: int
    params: int
    history: list[dict] = field(default_factory=list)  # one row per epoch
    diverged_at: int | None = None  # the epoch whose training loss was not finite
    state_dict: dict | None = None
    evaluated_on: str = "test"
    engine: dict = field(default_factory=dict)  # device, threads, seeds per pass, subset sizes
    started: float = 0.0  # unix time
    finished: float = 0.0

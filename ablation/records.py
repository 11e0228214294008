"""Run records on disk: reports/runs/<step>/seed-<k>.json and the final weights beside it (.pt).

A record holds the full step config, the per-epoch history, the goal verdicts and its provenance
(code version, library versions, device, threads, times), so every number in the report can be
traced to the code and machine that produced it. A record is whole or absent: its weights and JSON are
written under temporary names and published weights first, JSON last, the JSON carrying the weights'
SHA-256, so a reader never pairs a JSON with weights it does not describe. A variant's name holds its
--set text, so it names a folder only when it is short and plain (`folder_name`); no value reaches a path.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import torch

from .analysis import goal_verdicts
from .data import TRAIN_LABEL_COUNTS
from .train import RunResult

SCHEMA_VERSION = 1
DEFAULT_RUNS = Path("reports/runs")
PACKAGE = Path(__file__).resolve().parent
# A record's files are made readable like any other file the user writes (mkstemp alone makes them 0600).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


# The code that turns a step's config (stored whole in every record) into numbers. Report and CLI
# changes do not touch a run's results, so they do not make older records stale.
ENGINE_FILES = ("augment.py", "data.py", "distill.py", "models.py", "train.py")


@lru_cache(maxsize=1)
def source_hash() -> str:
    """SHA-256 (first 16 hex digits) over the engine's source files, in a fixed order."""
    digest = hashlib.sha256()
    for name in ENGINE_FILES:
        digest.update(name.encode())
        digest.update((PACKAGE / name).read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", *ENGINE_FILES))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"commit": commit or None, "dirty": dirty if commit else None}


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(result: RunResult) -> dict:
    import torchvision

    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
    return {
        **git_state(),
        "source_hash": source_hash(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "device_name": device_name(result.engine.get("device", "cpu")),
        **result.engine,
        "started": iso(result.started),
        "finished": iso(result.finished),
        "wall_seconds": round(result.finished - result.started, 2),
    }


def to_record(result: RunResult) -> dict:
    step = result.step
    return {
        "schema": SCHEMA_VERSION,
        "step": step.name,
        "seed": result.seed,
        "params": result.params,
        "evaluated_on": result.evaluated_on,
        "config": dataclasses.asdict(step),
        # float32 accuracies such as 99.41000366 print as 99.41: six decimals keep every real digit.
        "history": [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in result.history],
        "diverged_at": result.diverged_at,
        "verdicts": goal_verdicts(step.goals, result.params, result.history, result.diverged_at),
        "provenance": provenance(result),
    }


# A name is its own folder only if it is short and made of characters no shell or filesystem treats
# specially: '7-onecycle[lr=0.1]' stays readable; any other becomes '<step>~<digest of the name>'.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._,:=+\-\[\]]*")
MAX_FOLDER_NAME = 64
_DIGEST_CHARS = 12  # 48 bits of SHA-256: no two names of one study meet


def folder_name(step_name: str) -> str:
    """The folder of a step's (or variant's) records: the name itself when short and plain, else a short
    readable stem and a digest of the whole name (the full config is inside every record)."""
    if len(step_name) <= MAX_FOLDER_NAME and _PLAIN_NAME.fullmatch(step_name):
        return step_name
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", step_name.partition("[")[0])[:40].lstrip(".-") or "step"
    return f"{stem}~{hashlib.sha256(step_name.encode()).hexdigest()[:_DIGEST_CHARS]}"


def _is_one_name(text: str) -> bool:
    return (text not in ("", ".", "..") and "/" not in text and "\0" not in text
            and not (os.altsep and os.altsep in text) and len(os.fsencode(text)) <= 255)


def record_folder(out: Path, step_name: str) -> Path:
    """Where `step_name`'s records are under `out`: `folder_name`, or the folder an older version of this
    code named after the variant as it is (reports/validation* hold many), when that one exists."""
    out = Path(out)
    if _is_one_name(step_name):
        try:
            if (out / step_name).is_dir():
                return out / step_name
        except OSError:
            pass
    return out / folder_name(step_name)


def record_paths(out: Path, step_name: str, seed: int) -> tuple[Path, Path]:
    folder = record_folder(out, step_name)
    return folder / f"seed-{seed}.json", folder / f"seed-{seed}.pt"


def _temporary(path: Path, write) -> Path:
    """`write(file)` into a new temporary file beside `path`, flushed to disk; its name (removed on failure)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(result: RunResult, out: Path = DEFAULT_RUNS) -> Path:
    """Write the record's weights and JSON under temporary names, then publish them.

    The old JSON is removed before the weights are replaced and the new JSON is renamed in last, so at
    every instant the record is the old pair, absent, or the new pair: a kill in between leaves it absent
    (retrained by --resume), never new weights under an old history. The JSON names the weights' digest."""
    json_path, pt_path = record_paths(out, result.step.name, result.seed)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        written.append(_temporary(pt_path, lambda f: torch.save(result.state_dict, f)))
        record = {**to_record(result), "weights_sha256": file_sha256(written[0])}
        text = json.dumps(record, indent=1, sort_keys=False) + "\n"
        written.append(_temporary(json_path, lambda f: f.write(text.encode())))
        json_path.unlink(missing_ok=True)
        os.replace(written[0], pt_path)
        os.replace(written[1], json_path)
    finally:
        for tmp in written:
            tmp.unlink(missing_ok=True)
    return json_path


# What every record holds, and its type: a JSON without them is not a record this code can read.
RECORD_KEYS = {"step": str, "seed": int, "params": int, "evaluated_on": str, "config": dict, "history": list,
               "provenance": dict}


def load(path: Path) -> dict:
    """The record at `path`; ValueError naming the file when it cannot be read or is not a record."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bytes that are not UTF-8
        raise ValueError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA_VERSION:
        schema = record.get("schema") if isinstance(record, dict) else None
        raise ValueError(f"{path}: record schema {schema}, this code reads {SCHEMA_VERSION}")
    bad = [k for k, kind in RECORD_KEYS.items() if not isinstance(record.get(k), kind)]
    if bad or "diverged_at" not in record:
        raise ValueError(f"{path}: not a run record (missing or malformed: {', '.join(bad) or 'diverged_at'})")
    return record


def load_all(runs: Path = DEFAULT_RUNS) -> dict[str, list[dict]]:
    """{step name: [records sorted by seed]} for every complete record under `runs`. A damaged one is
    named on stderr and left out: one bad file must not stop a report, a summary or a run."""
    out: dict[str, list[dict]] = {}
    for path in sorted(Path(runs).glob("*/seed-*.json")):
        try:
            record = load(path)
        except ValueError as e:
            print(f"warning: skipped a damaged record: {e}", file=sys.stderr)
            continue
        out.setdefault(record["step"], []).append(record)
    for records in out.values():
        records.sort(key=lambda r: r["seed"])
    return out


def weights_problem(record: dict, weights: Path) -> str:
    """Why the weights beside a record are not the ones it describes; empty when they are. A record with a
    digest must match it; an older one (none) must have weights that load."""
    weights = Path(weights)
    if not weights.is_file():
        return f"its weights {weights} are missing"
    if digest := record.get("weights_sha256"):
        return "" if file_sha256(weights) == digest else f"its weights {weights} do not match the record's digest"
    try:
        load_weights(weights)
    except Exception as e:  # torch raises many kinds for a damaged file
        return f"its weights {weights} do not load ({type(e).__name__})"
    return ""


def probe_output(out: Path, seed_digits: int = 10) -> Path:
    """`out` resolved and created, with a folder and a file named as long as any a record needs written and
    removed in it; ValueError saying why not, before anything trains."""
    import shutil

    try:
        out = Path(out).expanduser().resolve()
        if out.exists() and not out.is_dir():
            raise ValueError(f"{out} is a file, not a folder")
        out.mkdir(parents=True, exist_ok=True)
        prefix = ".probe-"
        folder = Path(tempfile.mkdtemp(dir=out, prefix=prefix + "x" * (MAX_FOLDER_NAME - len(prefix) - 8)))
        try:
            with open(folder / f".seed-{'9' * seed_digits}.json.{'x' * 8}.tmp", "wb") as f:
                f.write(b"probe")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    except OSError as e:
        raise ValueError(f"{out}: records cannot be written there ({e.strerror or e})") from None
    return out


def evaluation_label(holdout: int = 0, fold: int = 0) -> str:
    """What a run's `evaluated_on` says for a holdout of `holdout` images (0: the test set), fold `fold`."""
    if not holdout:
        return "test"
    return f"validation ({holdout} held out of train{f', fold {fold}' if fold else ''})"


def reuse(path: Path, step, *, holdout: int = 0, fold: int = 0, epochs: int | None = None) -> tuple[dict | None, str]:
    """(the record at `path`, "") if training `step` again would only remake it, else (None, why not).

    Remade means: the same run config, trained on all the training images but the `holdout` ones and
    evaluated where asked, over `epochs` (default the step's) or diverged within them, by this engine (or
    one shown equivalent) from a committed tree. So a --quick run (a subset) is never reused, nor a run
    made while the engine's files had uncommitted edits.
    """
    from .steps import changed_run_fields

    if not Path(path).exists():
        return None, "no record"
    try:
        record = load(path)
    except (ValueError, KeyError) as e:  # another schema, or not a record at all
        return None, f"unreadable ({e})"
    epochs, p = epochs or step.epochs, record["provenance"]
    label, images = evaluation_label(holdout, fold), sum(TRAIN_LABEL_COUNTS) - holdout  # fewer: a --quick run
    if changed := changed_run_fields(step, record["config"]):
        return None, f"another config ({', '.join(changed)} differ)"
    if record["evaluated_on"] != label:
        return None, f"evaluated on {record['evaluated_on']}, not {label}"
    if p.get("train_images") != images:
        return None, f"trained on {p.get('train_images')} images, not {images:,} (a --quick run?)"
    diverged = record["diverged_at"]
    if not (len(record["history"]) == epochs if diverged is None else diverged <= epochs):
        return None, f"{len(record['history'])} epochs, not {epochs}"
    if stale := not_current_because(record):
        return None, "; ".join(stale)
    if why := weights_problem(record, Path(path).with_suffix(".pt")):
        return None, why
    return record, ""


def reusable(path: Path, step, **kwargs) -> dict | None:
    """The record at `path` if training `step` again would only remake it (see `reuse`), else None."""
    return reuse(path, step, **kwargs)[0]


def without_timings(history: list[dict]) -> list[dict]:
    """A run's history without its wall times: what the same seed on the same set-up reproduces bit for bit."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def load_weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def why_not_remeasurable(record: dict) -> str:
    """Empty when a record's saved weights, evaluated here, must give its last epoch's figures exactly; else why not."""
    if record["diverged_at"] is not None:
        return f"it diverged at epoch {record['diverged_at']}: its saved weights are not those of its last recorded epoch"
    made = record["provenance"]
    if (made.get("seeds_per_pass"), made.get("device"), made.get("threads")) != (1, "cpu", torch.get_num_threads()):
        # Grouped convolutions over K seeds, another device or thread count sum in another order: an image may flip.
        return (f"it was made {made.get('seeds_per_pass')} seed(s) to a pass on {made.get('device')} with "
                f"{made.get('threads')} thread(s), and exact agreement is promised only for a one-seed CPU run on as "
                f"many threads as here ({torch.get_num_threads()})")
    return ""


def saved_model(record: dict, weights: Path, **config):
    """The network a record's config describes (models.for_config; `config` replaces fields of it, e.g. other
    test-time views), with the record's saved weights."""
    from .models import for_config

    model = for_config({**record["config"], **config})
    model.load_state_dict(load_weights(weights))
    return model


def measure_weights(record: dict, weights: Path, images: torch.Tensor, labels: torch.Tensor,
                    **config) -> tuple[int, float]:
    """(images right, mean loss) of a record's saved weights on `images`, through `saved_model` and
    train.evaluate."""
    from .train import evaluate

    with torch.inference_mode():
        loss, correct = evaluate(saved_model(record, weights, **config), images, labels)
    return int(correct.item()), (loss / len(labels)).item()


# (engine source, earlier engine source): the earlier one's records, retrained by the later, came out
# bit for bit the same, history and weights; with the run that showed it. Both hashes are keys, so any
# further change to the engine drops the claim until a run shows it again (CI's reproduction check
# retrains the final step's seed 0 on every push). Claims chain: an engine shown equal to one that was
# shown equal to a third computes the third's runs too, so each new engine needs one retrain, not one per
# earlier engine. A link is one run, so it speaks for the code paths that run exercised; a new engine's
# retrain is chosen to exercise what its change touched, and the change must leave the other paths alone
# (off by default), which the fast tier's tests of each option check on quick runs.
EQUIVALENT_SOURCES = {
    ("f242a2e7096b2db2", "56f0cb08803b4819"):
        "14-padded-8k seed 0 (15 epochs, 60,000 images, one CPU thread), retrained at commit 4c6938e by this engine "
        "(distillation, off by default; depthwise-separable layout tokens; k-fold holdout; an unused import "
        "dropped), has the committed record's history, epoch by epoch, and its final weights, bit for bit.",
    ("b25d82b2e5ea2013", "56f0cb08803b4819"):
        "12-wide-end seed 0 (15 epochs, 60,000 images, one CPU thread), retrained at commit 2cd3d9e by this engine "
        "(a moving average of the weights, off by default), has the committed record's history, epoch by epoch, "
        "and its final weights, bit for bit.",
    ("b25d82b2e5ea2013", "f242a2e7096b2db2"):
        "15-weight-decay seed 0 (15 epochs, 60,000 images, one CPU thread), retrained at commit 2cd3d9e by this "
        "engine (a moving average of the weights, off by default), has the committed record's history, epoch by "
        "epoch, and its final weights, bit for bit.",
    ("b25d82b2e5ea2013", "e7a6bc10a5564cb2"):
        "8-no-dropout seed 0 on the held-out split (10,000 of train, fold 0; 15 epochs, one CPU thread), one of the "
        "distillation teachers in reports/validation, retrained at commit 65ad83e by this engine, has the committed "
        "record's history, epoch by epoch, and its final weights, bit for bit.",
    ("a5f11c9dc23a3f15", "56f0cb08803b4819"):
        "12-wide-end seed 0 (15 epochs, 60,000 images, one CPU thread), retrained at commit 901cb41 by this engine "
        "(an elastic distortion, off by default; the weight average's tensor pairs built once per run), has the "
        "committed record's history, epoch by epoch, and its final weights, bit for bit.",
    ("a5f11c9dc23a3f15", "b25d82b2e5ea2013"):
        "17-average-long-anneal seed 0 (15 epochs, 60,000 images, one CPU thread, weights averaged), retrained at "
        "commit 901cb41 by this engine, has the committed record's history, epoch by epoch, and its final weights, "
        "bit for bit.",
    ("a5f11c9dc23a3f15", "f242a2e7096b2db2"):
        "15-weight-decay seed 0 (15 epochs, 60,000 images, one CPU thread), retrained at commit 5d51af2 by this "
        "engine, has the committed record's history, epoch by epoch, and its final weights, bit for bit.",
    ("a5f11c9dc23a3f15", "e7a6bc10a5564cb2"):
        "8-no-dropout seed 0 on the held-out split (10,000 of train, fold 0; one CPU thread), a distillation "
        "teacher in reports/validation, retrained at commit 5d51af2 by this engine, has the committed record's "
        "history, epoch by epoch, and its final weights, bit for bit.",
    ("a5f11c9dc23a3f15", "c1bac9d24956e4f8"):
        "13-wide-end-6k with depthwise-separable blocks (sep3:32) seed 0 on the held-out split, retrained at commit "
        "14cf0a1 by this engine, has the committed record's history, epoch by epoch, and its final weights, bit for "
        "bit.",
    ("a5f11c9dc23a3f15", "96cf74423d9cea85"):
        "12-wide-end distilled from 8-no-dropout's five held-out seeds (weight 0.5, T 4) seed 2 on the held-out "
        "split, retrained at commit 14cf0a1 by this engine with the same teachers, has the committed record's "
        "history, epoch by epoch, and its final weights, bit for bit.",
    ("2533503fae823be5", "b25d82b2e5ea2013"):
        "17-average-long-anneal seed 0 (15 epochs, 60,000 images, one CPU thread, weights averaged), retrained at "
        "commit 53b39d2 by this engine (test-time shifts, off by default), has the committed record's history, "
        "epoch by epoch, and its final weights, bit for bit; so do the final weights of step 12's held-out runs "
        "(fold 0, made by 56f0cb0, and fold 1, by f242a2e) when trained again with test-time shifts.",
    ("e4cf9bea6712fa7a", "2533503fae823be5"):
        "18-shifted-views seed 0 (15 epochs, 60,000 images, one CPU thread, evaluated over five views), retrained at "
        "commit 6c0a5d3 by this engine (test-time shifts checked when a network is made; a distillation teacher's "
        "shifts used), has the committed record's history, epoch by epoch, and its final weights, bit for bit.",
    ("51a26b3d08e97189", "2533503fae823be5"):
        "18-shifted-views seed 0 (15 epochs, 60,000 images, one CPU thread, evaluated over five views), retrained at "
        "commit 92535d5 by this engine (a step's network built in one place, models.for_step), has the committed "
        "record's history, epoch by epoch, and its final weights, bit for bit.",
    ("7e3ddff99949534c", "56f0cb08803b4819"):
        "13-wide-end-6k seed 0 (15 epochs, 60,000 images, one CPU thread, rotation and colour jitter in every "
        "epoch), retrained at commit 128027d by this engine (augmentation that can end early, off by default), has "
        "the committed record's history, epoch by epoch, and its final weights, bit for bit.",
    ("28550d30c9d11c61", "56f0cb08803b4819"):
        "13-wide-end-6k seed 0 (15 epochs, 60,000 images, one CPU thread), retrained at commit 6b445bb by this engine "
        "(sharpness-aware minimisation, off by default; the loss of a batch computed in one local function), has the "
        "committed record's history, epoch by epoch, and its final weights, bit for bit.",
    ("dbd13a08a816a2d7", "2533503fae823be5"):
        "18-shifted-views seed 0 (15 epochs, 60,000 images, one CPU thread, evaluated over five views), retrained at "
        "commit 344229a by this engine (test-time rotations, off by default), has the committed record's history, "
        "epoch by epoch, and its final weights, bit for bit.",
    ("11588d2d7cceddf6", "56f0cb08803b4819"):
        "13-wide-end-6k seed 0 (15 epochs, 60,000 images, one CPU thread), retrained at commit 2ad1a78 by this engine "
        "(SAM puts BatchNorm's buffers back; distinct test-time views; models.for_config), has the committed record's "
        "history, epoch by epoch, and its final weights, bit for bit.",
    ("d812a75ad785af33", "56f0cb08803b4819"):
        "13-wide-end-6k seed 0 (15 epochs, 60,000 images, one CPU thread), retrained at commit 5844f16 by this engine "
        "(tied convolutions, a layout token no earlier step uses), has the committed record's history, epoch by "
        "epoch, and its final weights, bit for bit.",
    ("8fefaa4c0008eff5", "56f0cb08803b4819"):
        "13-wide-end-6k seed 0 (15 epochs, 60,000 images, one CPU thread), retrained at commit d31ba32 by this engine "
        "(the layout docstring and a refused tie's message), has the committed record's history, epoch by epoch, "
        "and its final weights, bit for bit.",
    ("9aebedc064e2b0c8", "56f0cb08803b4819"):
        "13-wide-end-6k seed 0 (15 epochs, 60,000 images, one CPU thread), retrained at commit 932e689 by this engine "
        "(TiedConv's geometry read as a convolution's; a tied layout's outputs are checked exactly by the fast tier), "
        "has the committed record's history, epoch by epoch, and its final weights, bit for bit.",
}


def equivalent_engines(engine: str) -> set[str]:
    """`engine` and every engine source linked to it by a chain of EQUIVALENT_SOURCES claims."""
    found, todo = {engine}, [engine]
    while todo:
        current = todo.pop()
        for pair in EQUIVALENT_SOURCES:
            if current in pair:
                todo += [e for e in pair if e not in found]
                found.update(pair)
    return found


def same_engine(made_by: str | None) -> bool:
    """Whether a record made by engine source `made_by` is what this engine computes."""
    return made_by in equivalent_engines(source_hash())


def not_current_because(record: dict) -> list[str]:
    """Why a record is not what this engine computes from committed code; empty when it is."""
    p, why = record["provenance"], []
    if not same_engine(p.get("source_hash")):
        why.append(f"made by engine source {p.get('source_hash')}, not the current {source_hash()}")
    if p.get("dirty"):
        why.append("made from a tree with uncommitted engine changes")
    return why


def is_current(record: dict) -> bool:
    """Made by this engine source (or one shown equivalent) from a committed tree (the report flags the rest)."""
    return not not_current_because(record)


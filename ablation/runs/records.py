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
import io
import json
import os
import platform
import re
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..engine import RunResult, git_state, source_hash
from ..engine.data import TRAIN_LABEL_COUNTS, evaluation_label
from ..engine.models import evaluate, for_config
from ..study.analysis import goal_verdicts
from ..study.screen import VALIDATION
from ..study.step import changed_run_fields
from ..study.survival import record_generation
from .machine import device_name, float_path

SCHEMA_VERSION = 1
# The engine's numeric generation: what tests/golden/*.json were accepted under. A change that moves any
# golden's numbers bumps it (tests/test_golden.py refuses to accept them otherwise), which makes every record
# made under an older one stale; a change that moves none leaves it, and every record stays current.
GENERATION = 2  # 2: channels-last networks, evaluation in chunks of 256, no NaN fill (issue 29)
DEFAULT_RUNS = Path("reports/runs")
PACKAGE = Path(__file__).resolve().parents[1]  # ablation/
# A record's files are made readable like any other file the user writes (mkstemp alone makes them 0600).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def provenance(result: RunResult) -> dict:
    import torchvision

    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
    return {
        **git_state(),
        "generation": GENERATION,
        "source_hash": source_hash(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "device_name": device_name(result.engine.get("device", "cpu")),
        **(float_path() if str(result.engine.get("device", "cpu")).startswith("cpu") else {}),
        # Which machine trained it: on a cluster, the node (the record is written by the driver).
        "host": platform.node(),
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


# Beside the records: what only the engine can compute for the report (measure.py writes it, the report reads it).
MEASURED = "measured.json"


def load_measured(runs: Path) -> dict:
    """What measure.py wrote for the records under `runs`; {} when nothing was measured there."""
    path = Path(runs) / MEASURED
    return json.loads(path.read_text()) if path.is_file() else {}


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


def atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def encode(result: RunResult) -> tuple[dict, bytes]:
    """A finished run as what goes to disk: its record and its weights' bytes. Made where the run trained (its
    provenance is that machine's), written by `write` wherever the records live, so a run trained on another
    machine, or in a worker process, writes the same bytes as one trained here."""
    buffer = io.BytesIO()
    torch.save(result.state_dict, buffer)
    return to_record(result), buffer.getvalue()


def write(record: dict, weights: bytes, out: Path = DEFAULT_RUNS) -> Path:
    """Write a record's weights and JSON under temporary names, then publish them.

    The old JSON is removed before the weights are replaced and the new JSON is renamed in last, so at
    every instant the record is the old pair, absent, or the new pair: a kill in between leaves it absent
    (retrained by --resume), never new weights under an old history. The JSON names the weights' digest."""
    json_path, pt_path = record_paths(out, record["step"], record["seed"])
    json_path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**record, "weights_sha256": hashlib.sha256(weights).hexdigest()}, indent=1) + "\n"
    written = []
    try:
        written.append(_temporary(pt_path, lambda f: f.write(weights)))
        written.append(_temporary(json_path, lambda f: f.write(text.encode())))
        json_path.unlink(missing_ok=True)
        os.replace(written[0], pt_path)
        os.replace(written[1], json_path)
    finally:
        for tmp in written:
            tmp.unlink(missing_ok=True)
    return json_path


def save(result: RunResult, out: Path = DEFAULT_RUNS) -> Path:
    return write(*encode(result), out)


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


def ran_for(record: dict, epochs: int) -> bool:
    """Whether `record` is a run of `epochs` epochs: that many in its history, or diverged within them."""
    diverged = record["diverged_at"]
    return len(record["history"]) == epochs if diverged is None else diverged <= epochs


def reuse(path: Path, step, *, holdout: int = 0, fold: int = 0, epochs: int | None = None) -> tuple[dict | None, str]:
    """(the record at `path`, "") if training `step` again would only remake it, else (None, why not).

    Remade means: the same run config, trained on all the training images but the `holdout` ones and
    evaluated where asked, over `epochs` (default the step's) or diverged within them, under this engine
    generation (GENERATION) from a committed tree. So a --quick run (a subset) is never reused, nor a run
    made while the engine's files had uncommitted edits.
    """
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
    if not ran_for(record, epochs):
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
    model = for_config({**record["config"], **config})
    model.load_state_dict(load_weights(weights))
    return model


def measure_weights(record: dict, weights: Path, images: torch.Tensor, labels: torch.Tensor,
                    **config) -> tuple[int, float]:
    """(images right, mean loss) of a record's saved weights on `images`, through `saved_model` and
    models.evaluate (what training evaluates each epoch with)."""
    with torch.inference_mode():
        loss, correct = evaluate(saved_model(record, weights, **config), images, labels)
    return int(correct.item()), (loss / len(labels)).item()


def not_current_because(record: dict) -> list[str]:
    """Why a record is not what this engine computes from committed code; empty when it is."""
    p, why = record["provenance"], []
    if (made := record_generation(record)) != GENERATION:
        made_as = "an unknown engine generation" if made is None else f"engine generation {made}"
        why.append(f"made under {made_as} (source {p.get('source_hash')}), not the current generation {GENERATION}")
    if p.get("dirty"):
        why.append("made from a tree with uncommitted engine changes")
    return why


def load_folds(validation: Path = VALIDATION) -> dict[int, dict[str, list[dict]]]:
    """{fold: {step name: records}} of every held-out fold found beside `validation`, fold 0 included."""
    folds = {0: load_all(validation)}
    for path in sorted(Path(validation).parent.glob("validation-folds/fold-*")):
        if (k := path.name.removeprefix("fold-")).isdigit():
            folds[int(k)] = load_all(path)
    return dict(sorted(folds.items()))


def records_of(folder: Path, step) -> list[dict]:
    """The readable records filed under `step`'s name in `folder` (a damaged one is named later, by load_all)."""
    found = []
    for path in sorted(record_folder(folder, step.name).glob("seed-*.json")):
        try:
            found.append(load(path))
        except ValueError:
            pass
    return found


def other_length_seeds(found: list[dict], images: int, epochs: int) -> list[int]:
    """The seeds of `found` trained on all `images` of the training set (a --quick run trains on fewer) for
    another number of epochs than `epochs`: runs a run of `epochs` would replace or mix with."""
    return sorted({r["seed"] for r in found
                   if r["provenance"].get("train_images") == images and not ran_for(r, epochs)})


def is_study_folder(folder: Path, study: Path) -> bool:
    """Whether `folder` is the study's committed `study` folder (relative to here or to the package's
    checkout) however it is spelled: '..', an absolute path or a link."""
    target = Path(folder).expanduser().resolve()
    return any(target == Path(where, study).resolve() for where in (Path.cwd(), PACKAGE.parent))


def resume(out: Path, step, seeds: list[int], **reuse_options) -> tuple[list[int], list[int], dict[int, str]]:
    """What --resume makes of `step`'s `seeds` under `out`: (the seeds still to train, the seeds whose record is
    kept, why each other record found there is trained again). reuse_options: reuse's holdout, fold and epochs."""
    todo, kept, retrained = [], [], {}
    for seed in seeds:
        record, why_not = reuse(record_paths(out, step.name, seed)[0], step, **reuse_options)
        (kept if record else todo).append(seed)
        if not record and why_not != "no record":
            retrained[seed] = why_not
    return todo, kept, retrained

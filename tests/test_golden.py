"""Golden runs: what every registered step computes, pinned bit for bit on a run of seconds.

Each step trains seed 0 for its full number of epochs, with its schedule, augmentation, weight average,
test-time views and batch size, on the first TRAIN_IMAGES training images (a partial last batch at every
batch size the registry uses) and is evaluated on the first TEST_IMAGES test images. The history (every
float as it came, at full precision) and a SHA-256 digest of the final weights must equal
tests/golden/<step>.json exactly. CPU only, one thread: the promise of bit-identity is made there (the
goldens say nothing about CUDA).

The goldens define the engine's numeric generation (records.GENERATION): each was accepted under one,
and a record is current while it was made under today's. A change that moves no number needs nothing.
A change that moves numbers must bump records.GENERATION, then re-accept every golden:

    ABLATION_ACCEPT_GOLDEN=1 python -m pytest -m fast tests/test_golden.py -n 0

Accepting refuses to overwrite a golden whose numbers moved under the generation it was accepted in, so
the bump cannot be forgotten; the bump makes every older record stale (records.not_current_because),
and `python -m ablation run --resume` retrains them.

Options that no registered step turns on but committed validation records use (SAM, the elastic
distortion, an early end of the augmentation, bilinear rotation with shifts, label smoothing,
depthwise-separable and tied layouts, distillation) have goldens of their own, VARIANTS: a registered step
with the overrides `python -m ablation screen ... --set` gives. The distilling one is taught by its
teacher's seeds trained for one epoch on the same images into a temporary folder, in one pass: a fixture
as deterministic as the run it teaches.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from ablation import records
from ablation.data import MNIST
from ablation.steps import STEPS, with_overrides
from ablation.train import train_many

pytestmark = pytest.mark.fast

GOLDEN_DIR = Path(__file__).parent / "golden"
ACCEPT_VAR = "ABLATION_ACCEPT_GOLDEN"
ACCEPT_COMMAND = f"{ACCEPT_VAR}=1 python -m pytest -m fast tests/test_golden.py -n 0"
# 136 = 128 + 8 = 2 x 64 + 8 = 4 x 32 + 8: at every batch size in the registry an epoch is two or more
# updates, the last one on a partial batch; 64 test images go through every test-time view.
TRAIN_IMAGES = 136
TEST_IMAGES = 64
SEED = 0
THREADS = 1
# name: (registered step, overrides as `--set` writes them).
VARIANTS = {
    "variant-augment-options": ("13-wide-end-6k", ["augment.elastic=2.0", "augment.until_epoch=7", "augment.translate=0.1",
                                                   "augment.interpolation=bilinear", "label_smoothing=0.1"]),
    "variant-sam": ("13-wide-end-6k", ["sam=0.05"]),
    "variant-separable-tied": ("19-views-6k", ["layout=('conv3:8','conv3:10','conv1:8','pool','conv3:10','conv3:16',"
                                               "'conv3:16','tied3p:16','sep3p:14','gap','conv1:10')"]),
    "variant-distill": ("12-wide-end", ["distill.teacher=8-no-dropout", "distill.weight=0.5", "distill.temperature=4.0"]),
}
CASES = [pytest.param(step.name, step, id=step.name) for step in STEPS.values()] + [
    pytest.param(name, with_overrides(STEPS[base], overrides), id=name) for name, (base, overrides) in VARIANTS.items()]


def weights_digest(state_dict: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def golden_run(step, mnist, tmp_path: Path) -> dict:
    """The numbers a short run of `step` computes: its golden, without the generation it was accepted in."""
    # Cut here rather than with train_many's limit_train (the same images): a teacher must have been
    # trained on all of the images its student is.
    data = MNIST(mnist.train_images[:TRAIN_IMAGES], mnist.train_labels[:TRAIN_IMAGES],
                 mnist.test_images[:TEST_IMAGES], mnist.test_labels[:TEST_IMAGES])
    teachers = None
    if step.distill.active:
        teacher, teachers = STEPS[step.distill.teacher], [tmp_path / "teachers"]
        for r in train_many(teacher, teacher.seeds, device="cpu", threads=THREADS, data=data, epochs=1):
            records.save(r, teachers[0])
    result = train_many(step, [SEED], device="cpu", threads=THREADS, data=data, teacher_dirs=teachers)[0]
    return {"step": step.name, "seed": SEED, "train_images": TRAIN_IMAGES, "test_images": TEST_IMAGES,
            "threads": THREADS, "device": "cpu", "params": result.params, "diverged_at": result.diverged_at,
            "history": records.without_timings(result.history), "weights_sha256": weights_digest(result.state_dict)}


def moved(golden: dict, fresh: dict) -> list[str]:
    """What differs between a golden and a fresh run, in words (the first few differences)."""
    out = [f"{key}: golden {golden.get(key)!r}, now {fresh[key]!r}"
           for key in fresh if key != "history" and golden.get(key) != fresh[key]]
    old, new = golden.get("history", []), fresh["history"]
    if len(old) != len(new):
        out.append(f"history: {len(old)} epochs in the golden, {len(new)} now")
    for a, b in zip(old, new):
        out += [f"epoch {b['epoch']} {k}: golden {a.get(k)!r}, now {b[k]!r}" for k in b if a.get(k) != b[k]]
    return out[:6] + ([f"... and {len(out) - 6} more"] if len(out) > 6 else [])


def write_golden(path: Path, fresh: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"generation": records.GENERATION, **fresh}, indent=1) + "\n")


@pytest.mark.parametrize("name, step", CASES)
def test_golden_run(name, step, mnist, tmp_path):
    """The step's short run computes exactly its golden's numbers (CPU, one thread), accepted under today's
    records.GENERATION."""
    path = GOLDEN_DIR / f"{name}.json"
    fresh = golden_run(step, mnist, tmp_path)
    accept = os.environ.get(ACCEPT_VAR) == "1"
    if not path.exists():
        if accept:
            return write_golden(path, fresh)
        pytest.fail(f"{step.name}: no golden at {path}; to accept what this engine computes, run\n    {ACCEPT_COMMAND}")
    golden = json.loads(path.read_text())
    changes = moved(golden, fresh)
    if accept:
        if changes and golden.get("generation") == records.GENERATION:
            pytest.fail(f"{step.name}: numbers moved under generation {records.GENERATION}, the one this golden "
                        f"was accepted in; bump records.GENERATION first (older records then become stale), "
                        f"then accept again:\n  " + "\n  ".join(changes))
        if changes or golden.get("generation") != records.GENERATION:
            write_golden(path, fresh)
        return
    if changes:
        pytest.fail(f"{step.name}: numbers moved ({path.name}):\n  " + "\n  ".join(changes) +
                    f"\nIf intended: bump records.GENERATION, then run\n    {ACCEPT_COMMAND}")
    if golden.get("generation") != records.GENERATION:
        pytest.fail(f"{step.name}: golden accepted under generation {golden.get('generation')}, the engine is at "
                    f"{records.GENERATION}; run\n    {ACCEPT_COMMAND}")


def test_every_golden_belongs_to_a_registered_step_or_variant():
    """A golden left behind by a renamed or removed step is an error, not a silent extra file."""
    names = {p.stem for p in GOLDEN_DIR.glob("*.json")}
    assert names <= set(STEPS) | set(VARIANTS), f"goldens without a step: {sorted(names - set(STEPS) - set(VARIANTS))}"

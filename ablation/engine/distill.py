"""A teacher's soft targets for knowledge distillation (a step's `distill` field; the loss is in train.py).

The teacher is an ensemble: the finished records of all of the teacher step's seeds, trained on the
same training images as the student. That rule matters for validation runs: a teacher trained on all 60,000 images
has seen the held-out ones, and a student taught by it would be judged on images its teacher learnt.
Its logits are averaged over the ensemble and computed once, on the clean (un-augmented) training
images, so distillation costs one forward pass per teacher per run, not one per batch.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .data import MNIST
from .models import for_step, normalize
from ..study.registry import get_step
from ..study.step import Step, changed_run_fields

CHUNK = 2000  # images per teacher forward pass


class TeacherError(LookupError):
    pass


def find_teachers(step: Step, evaluated_on: str, train_images: int, folders: list[Path]) -> list[Path]:
    """The record JSONs of every one of the teacher step's seeds, from the first of `folders` that holds any
    trained on all of the student's `train_images` and evaluated on the same images, so that no teacher
    has seen what the student is judged on."""
    from ..runs import records  # read a teacher's records (layering: pruned with distillation)

    teacher = get_step(step.distill.teacher)
    for folder in folders:
        found = {}
        for seed in teacher.seeds:
            path, _ = records.record_paths(folder, teacher.name, seed)
            if not path.exists():
                continue
            r = records.load(path)
            same_data = r["evaluated_on"] == evaluated_on and r["provenance"].get("train_images") == train_images
            if same_data and r["diverged_at"] is None and not changed_run_fields(teacher, r["config"]):
                found[seed] = path
        if found:
            missing = sorted(set(teacher.seeds) - set(found))
            if missing:  # a partial ensemble would teach something else than the full one does
                raise TeacherError(f"{step.name} is taught by all of {teacher.name}'s seeds {list(teacher.seeds)}; "
                                   f"{folder} lacks seeds {missing} trained on these {train_images:,} images "
                                   f"({evaluated_on})")
            return list(found.values())
    raise TeacherError(f"{step.name} is taught by {teacher.name}, but none of {[str(f) for f in folders]} holds a "
                       f"finished {teacher.name} record trained on these {train_images:,} images ({evaluated_on}); "
                       f"train it first: python -m ablation run --steps {teacher.name}, with the same --holdout")


@torch.no_grad()
def teacher_logits(step: Step, data: MNIST, paths: list[Path]) -> tuple[torch.Tensor, list[dict]]:
    """(N, 10) logits on data's training images, averaged over the teachers; and what each teacher was.

    A teacher step evaluated with test-time shifts gives its log-probabilities over the views instead:
    logits up to a constant per image, which the softened softmax of the distillation loss ignores."""
    from ..runs import records  # read a teacher's records (layering: pruned with distillation)

    teacher = get_step(step.distill.teacher)
    device = data.train_images.device
    total, used = None, []
    for path in paths:
        weights = path.with_suffix(".pt")
        model = for_step(teacher)
        model.load_state_dict(records.load_weights(weights))
        model.to(device).eval()
        logits = torch.cat([model(normalize(data.train_images[i:i + CHUNK]).unsqueeze(1)).view(-1, 10)
                            for i in range(0, len(data.train_images), CHUNK)])
        total = logits if total is None else total + logits
        used.append({"record": str(path), "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()[:16]})
    return total / len(paths), used

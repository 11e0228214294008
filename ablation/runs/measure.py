"""What the report shows that only the engine can compute, measured once and written beside the records.

`<runs>/measured.json` holds the final model's mistakes on the MNIST test set (its predictions, the
confusion counts and the pixels of the first mistakes) and every registered step's per-layer table. `run`
writes it after training, and `python -m ablation measure --runs DIR` for a folder of records made
elsewhere; the report reads it, so rendering needs neither MNIST nor a network's forward pass.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..engine import data
from ..engine.models import Net, layer_table, normalize
from ..study.registry import FINAL_STEP, STEPS
from ..study.screen import VIEW_FIELDS, Pair, as_registered, check_views_only, fold_dir
from ..study.step import Step, run_config
from . import records
from .records import load_folds, measure_weights, record_paths, why_not_remeasurable

MAX_MISTAKES_KEPT = 60  # the report shows these; the count and the confusion matrix cover all of them


def final_mistakes(runs: Path, data_dir=None) -> dict:
    """The first seed of FINAL_STEP with weights under `runs`, run on the MNIST test set: its mistakes and the
    confusion counts; {"missing": why} when the records, the weights or the data are not there."""
    found = [(r, records.record_paths(runs, FINAL_STEP, r["seed"])[1]) for r in records.load_all(runs).get(FINAL_STEP, [])]
    if not found:
        return {"missing": f"no runs of {FINAL_STEP} under {runs}"}
    found = [(r, p) for r, p in found if p.is_file()]
    if not found:
        return {"missing": f"no weights (.pt) beside the {FINAL_STEP} records under {runs}"}
    record, weights = found[0]
    raw = data.data_root(data_dir) / "MNIST" / "raw"
    if not all((raw / name).is_file() for name in data.SHA256):  # checked here so that measuring never downloads
        return {"missing": f"MNIST test images not found under {raw} (set $ABLATION_DATA)"}
    try:
        model = records.saved_model(record, weights)
        mnist = data.load_mnist(data_dir)
    except Exception as e:  # noqa: BLE001 - a damaged file or a mismatched network: said in the report
        return {"missing": f"could not evaluate {weights}: {type(e).__name__}: {e}"}
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(normalize(mnist.test_images[i:i + 2000]).unsqueeze(1)).argmax(1)
                          for i in range(0, len(mnist.test_images), 2000)])
    true = mnist.test_labels
    wrong = (pred != true).nonzero().flatten().tolist()
    return {"step": FINAL_STEP, "seed": record["seed"], "weights": str(weights), "total": len(wrong),
            "images": len(true), "accuracy": 100 * (1 - len(wrong) / len(true)),
            "record_acc": record["history"][-1]["test_acc"] if record["history"] else None,
            "confusion": torch.bincount(true * 10 + pred, minlength=100).view(10, 10).tolist(),
            "shown": [{"index": i, "true": int(true[i]), "pred": int(pred[i]),
                       "pixels": bytes(mnist.test_images[i].flatten().tolist()).hex()} for i in wrong[:MAX_MISTAKES_KEPT]]}


def layer_tables() -> dict[str, list[dict]]:
    """Every registered step's per-layer table (analysis.layer_table of its network)."""
    return {name: layer_table(Net(s.layout, batchnorm=s.batchnorm, dropout=s.dropout)) for name, s in STEPS.items()}


def measure(runs: Path, data_dir=None) -> Path:
    """Write `<runs>/measured.json`; returns its path."""
    text = json.dumps({"mistakes": final_mistakes(runs, data_dir), "layers": layer_tables()}, indent=1) + "\n"
    path = Path(runs) / records.MEASURED
    records.atomic_write(path, lambda f: f.write(text.encode()))
    return path


def preview_views(step: Step, variant: Step, validation: Path, data, *, holdout: int, fold_ids: list[int],
                  seeds: list[int], limit_test: int | None = None) -> tuple[list[Pair], list[str]]:
    """(pairs, the (fold, seed)s left out and why) for a variant of `step` that changes only VIEW_FIELDS: each
    (fold, seed) of the step's saved fold runs, its final held-out accuracy through its saved weights with its own
    views and with the variant's. Only the final epoch can be measured so (the minima of the last epochs are nan):
    a preview ranks views before a screen, it is not a screen's verdict.

    A run is paired only if its saved weights, with the step's own views, give the record's last epoch exactly
    (images right, and the loss within the record's rounding): weights and a record that do not belong together
    would measure nothing."""
    check_views_only(step, variant)
    views = {f: v for f, v in run_config(variant).items() if f in VIEW_FIELDS}
    folds, found, left_out = load_folds(validation), [], []
    for k in fold_ids:
        runs = {r["seed"]: r for r in as_registered(step, folds.get(k, {}))}
        held = data.holdout(holdout, fold=k)
        images, labels = held.test_images[:limit_test], held.test_labels[:limit_test]
        n = len(labels)
        for seed in seeds:
            record, where = runs.get(seed), f"fold {k} seed {seed}"
            if record is None:
                quick = " --quick" if limit_test else ""
                left_out.append(f"{where}: no run of {step.name} (python -m ablation run --steps {step.name} --seeds "
                                f"{seed} --holdout {holdout} --fold {k}{quick} --out {fold_dir(validation, k)} trains it)")
                continue
            weights = record_paths(fold_dir(validation, k), record["step"], seed)[1]
            why = why_not_remeasurable(record)
            if not why and not weights.is_file():
                why = f"no saved weights at {weights}"
            if not why and record["provenance"].get("eval_images", n) != n:
                why = (f"it was evaluated on {record['provenance']['eval_images']:,} held-out images, not {n:,} "
                       f"(a --quick run, or another --holdout?)")
            if why:
                left_out.append(f"{where}: {why}")
                continue
            try:
                right, loss = measure_weights(record, weights, images, labels)
                right_with_views = measure_weights(record, weights, images, labels, **views)[0]
            except Exception as e:  # a damaged file or a mismatched network: name it, measure the rest
                left_out.append(f"{where}: could not evaluate {weights}: {type(e).__name__}: {e}")
                continue
            last = record["history"][-1]
            if right != round(last["test_acc"] * n / 100) or abs(loss - last["test_loss"]) > 5.0001e-7:
                left_out.append(f"{where}: {weights} gives {100 * right / n:.2f} % and loss {loss:.6f} on {n:,} "
                                f"held-out images, its record {last['test_acc']:.2f} % and {last['test_loss']:.6f}")
                continue
            found.append(Pair(k, seed, 100 * right / n, 100 * right_with_views / n))
    return found, left_out

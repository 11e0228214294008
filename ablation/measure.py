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

from . import records
from .analysis import layer_table
from . import data
from .models import Net, normalize
from .steps import FINAL_STEP, STEPS

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

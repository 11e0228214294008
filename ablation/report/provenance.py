"""Where every number came from: the engines, environments and commits that made the records, the records
flagged as not current, the wall time per step, and the speed figures of bench.json."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..runs.records import GENERATION, not_current_because, source_hash
from ..study.registry import STEPS
from ..study.step import Step, changed_run_fields
from .format import num


ENV_KEYS = ("commit", "dirty", "source_hash", "python", "torch", "torchvision", "device", "device_name", "threads",
            "seeds_per_pass", "platform")


def record_flags(step: Step | None, record: dict) -> list[str]:
    p, flags = record["provenance"], not_current_because(record)
    if p.get("dirty") is None and not flags:
        flags.append("commit unknown (not made in a git checkout)")
    if record["evaluated_on"] != "test":
        flags.append(f"evaluated on {record['evaluated_on']}")
    elif p.get("train_images", 60_000) < 60_000:
        flags.append(f"trained on {p['train_images']:,} images only (a smoke run)")
    if step is not None:
        if len(record["history"]) < step.epochs and record["diverged_at"] is None:
            flags.append(f"{len(record['history'])} of {step.epochs} epochs")
        changed = changed_run_fields(step, record["config"])
        if changed:
            flags.append("config differs from the registry in " + ", ".join(changed))
    if record["diverged_at"] is not None:
        flags.append(f"diverged at epoch {record['diverged_at']}")
    return flags


def when(iso: str) -> str:
    """'2026-11-28T15:59:36+00:00' -> '2026-11-28 15:59 UTC' (records store UTC)."""
    return iso[:16].replace("T", " ") + (" UTC" if iso.endswith("+00:00") else iso[19:])


def provenance_view(records_by_step: dict[str, list[dict]]) -> dict:
    all_records = [r for name in sorted(records_by_step) for r in records_by_step[name]]
    envs: dict[tuple, dict] = {}
    for r in all_records:
        p = r["provenance"]
        key = tuple(str(p.get(k)) for k in ENV_KEYS)
        env = envs.setdefault(key, {**{k: p.get(k) for k in ENV_KEYS}, "records": 0, "steps": [], "wall": 0.0})
        env["records"] += 1
        env["wall"] += p["wall_seconds"]
        if r["step"] not in env["steps"]:
            env["steps"].append(r["step"])
    flags = [{"where": f"{r['step']} seed {r['seed']}", "flags": "; ".join(f)}
             for r in all_records if (f := record_flags(STEPS.get(r["step"]), r))]
    walls = []
    for name in STEPS:
        recs = records_by_step.get(name, [])
        if recs:
            secs = [r["provenance"]["wall_seconds"] for r in recs]
            walls.append({"step": name, "n": len(recs), "mean": num(statistics.fmean(secs), 1),
                          "total": num(sum(secs), 1),
                          "per_epoch": num(statistics.fmean(row["seconds"] for r in recs for row in r["history"]), 2)
                          if any(r["history"] for r in recs) else "—",
                          "device": ", ".join(sorted({r["provenance"].get("device_name") or "?" for r in recs}))})
    started = sorted(r["provenance"]["started"] for r in all_records)
    finished = sorted(r["provenance"]["finished"] for r in all_records)
    # One row per engine and environment; the commits that ran each are folded beside it.
    engines: dict[tuple, dict] = {}
    for e in envs.values():
        key = tuple(str(e[k]) for k in ENV_KEYS if k not in ("commit", "dirty"))
        row = engines.setdefault(key, {**e, "commits": [], "records": 0, "wall": 0.0, "dirty": False})
        row["commits"].append(str(e["commit"] or "unknown")[:12] + (" (dirty)" if e["dirty"] else ""))
        row["records"] += e["records"]
        row["wall"] += e["wall"]
        row["dirty"] = row["dirty"] or bool(e["dirty"])
    return {"source_hash": source_hash(), "generation": GENERATION, "envs": sorted(envs.values(), key=lambda e: (-e["records"], str(e["commit"]))),
            "engines": sorted(engines.values(), key=lambda e: (-e["records"], str(e["source_hash"]))),
            "platforms": sorted({str(e["platform"]) for e in envs.values()}),
            "flags": flags, "walls": walls, "n": len(all_records),
            "total_wall": num(sum(r["provenance"]["wall_seconds"] for r in all_records), 1),
            "dates": (when(started[0]), when(finished[-1])) if all_records else None,
            "others": [(name, len(recs)) for name, recs in sorted(records_by_step.items()) if name not in STEPS]}


BENCH_LABELS = {
    "reference_samples_per_s": "reference notebook loop, images/s",
    "engine_samples_per_s": "this engine, one seed, images/s",
    "multi_seed_samples_per_s": "this engine, seeds in one pass, images/s",
    "speedup_single": "speed-up, one seed",
    "speedup_multi": "speed-up, seeds in one pass",
}


def bench_view(bench: dict | None) -> list[dict] | None:
    if bench is None:
        return None
    rows = []
    for key in sorted(bench, key=lambda k: (k not in BENCH_LABELS, list(BENCH_LABELS).index(k) if k in BENCH_LABELS else 0, k)):
        v = bench[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        elif key.startswith("speedup"):
            text = f"× {v:.2f}"
        elif key.endswith("per_s"):
            text = f"{v:,.0f}"
        else:
            text = f"{v:g}" if isinstance(v, float) else f"{v:,}"
        rows.append({"key": key, "label": BENCH_LABELS.get(key, key), "value": text})
    return rows


def load_bench(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None

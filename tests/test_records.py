"""Run records: what they hold, and that writing them is all-or-nothing."""
import json

import pytest
import torch

from ablation.runs import machine, records

from ablation import train

from ablation import STEPS, build_model

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def result(mnist):
    return train(STEPS["5-lr-schedule"], seed=2, data=mnist, limit_train=512, limit_test=200, epochs=2)


def test_record_holds_config_history_verdicts_and_provenance(result, tmp_path):
    path = records.save(result, tmp_path)
    assert path == tmp_path / "5-lr-schedule" / "seed-2.json"
    record = records.load(path)
    assert record["schema"] == records.SCHEMA_VERSION and record["seed"] == 2 and record["params"] == 9_752
    assert record["config"]["batch_size"] == 32 and record["config"]["schedule"]["kind"] == "step"
    assert [row["epoch"] for row in record["history"]] == [1, 2]
    for row in record["history"]:
        assert set(row) >= {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"}
        assert 0 <= row["test_acc"] <= 100
    assert set(record["verdicts"]) == {"params", "epochs", "floor", "diverged"}
    p = record["provenance"]
    for key in ("commit", "dirty", "generation", "source_hash", "python", "torch", "torchvision", "device_name", "threads",
                "started", "finished", "wall_seconds"):
        assert key in p, key
    assert p["torch"] == torch.__version__ and p["threads"] == torch.get_num_threads()
    assert p["generation"] == records.GENERATION  # so it is current, unless made from a dirty tree
    assert not [why for why in records.not_current_because(record) if "generation" in why]


def test_weights_beside_the_record_load_into_build_model(result, tmp_path):
    records.save(result, tmp_path)
    model = build_model("5-lr-schedule")
    model.load_state_dict(records.load_weights(tmp_path / "5-lr-schedule" / "seed-2.pt"))


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_record(result, tmp_path, monkeypatch):
    path = records.save(result, tmp_path)
    before = path.read_bytes()

    def broken_dumps(*args, **kwargs):
        raise KeyboardInterrupt  # as if Ctrl-C arrived while writing

    monkeypatch.setattr(records.json, "dumps", broken_dumps)
    with pytest.raises(KeyboardInterrupt):
        records.save(result, tmp_path)
    assert path.read_bytes() == before
    assert not list(tmp_path.rglob("*.tmp"))


def test_atomic_write_cleans_up_after_an_error(tmp_path):
    def fails(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        records.atomic_write(tmp_path / "x.json", fails)
    assert list(tmp_path.iterdir()) == []


def test_load_all_groups_by_step_sorted_by_seed(result, tmp_path):
    for seed in (3, 1):
        result.seed = seed
        records.save(result, tmp_path)
    result.seed = 2
    grouped = records.load_all(tmp_path)
    assert list(grouped) == ["5-lr-schedule"] and [r["seed"] for r in grouped["5-lr-schedule"]] == [1, 3]


def test_other_schema_versions_are_refused(tmp_path):
    path = tmp_path / "seed-0.json"
    path.write_text(json.dumps({"schema": 999}))
    with pytest.raises(ValueError, match="schema"):
        records.load(path)


def test_a_record_is_current_while_it_was_made_under_todays_generation():
    made = {"provenance": {"generation": records.GENERATION, "source_hash": "0123456789abcdef", "dirty": False}}
    assert records.not_current_because(made) == []  # whatever source made it: the goldens vouch for the numbers
    older = {"provenance": {"generation": records.GENERATION - 1, "source_hash": records.source_hash()}}
    assert records.not_current_because(older) == [f"made under engine generation {records.GENERATION - 1} (source "
                                                   f"{records.source_hash()}), not the current generation {records.GENERATION}"]


def test_a_record_without_a_generation_is_generation_1_only_from_a_source_the_ledger_linked():
    from ablation.study.survival import GENERATION_1_SOURCES, record_generation

    for source in sorted(GENERATION_1_SOURCES):
        assert record_generation({"provenance": {"source_hash": source}}) == 1
    assert record_generation({"provenance": {"source_hash": "0123456789abcdef"}}) is None
    assert record_generation({"provenance": {}}) is None
    assert "unknown engine generation" in records.not_current_because({"provenance": {"source_hash": "0123456789abcdef"}})[0]


@pytest.fixture
def committed(tmp_path):
    """A copy of the final step's committed seed-0 record (a full run on the test set) with its weights, as
    made under today's engine generation (the committed one may await its retraining after a bump), and its step."""
    from ablation.study.registry import FINAL_STEP

    source, weights = records.record_paths(records.DEFAULT_RUNS, FINAL_STEP, 0)
    path = tmp_path / "seed-0.json"
    record = json.loads(source.read_text())
    record["provenance"]["generation"] = records.GENERATION
    path.write_text(json.dumps(record))
    path.with_suffix(".pt").write_bytes(weights.read_bytes())
    return path, STEPS[FINAL_STEP]


def test_a_committed_full_run_is_reusable_for_its_own_config_only(committed):
    from ablation.study.registry import with_overrides

    path, step = committed
    assert records.reusable(path, step)["seed"] == 0
    assert records.reusable(path, with_overrides(step, ["lr=0.1"])) is None  # another config
    assert records.reusable(path, step, holdout=10_000) is None  # evaluated elsewhere
    assert records.reusable(path, step, epochs=3) is None  # another length
    assert records.reusable(path.with_name("seed-9.json"), step) is None  # no record


@pytest.mark.parametrize("change, why", [({"dirty": True}, "uncommitted engine changes"),
                                         ({"generation": 0}, "made under engine generation 0"),
                                         ({"train_images": 2048}, "trained on 2048 images")])
def test_a_record_from_another_engine_tree_or_training_set_is_not_reused(committed, change, why):
    path, step = committed
    record = json.loads(path.read_text())
    record["provenance"].update(change)
    path.write_text(json.dumps(record))
    assert records.reusable(path, step) is None
    assert why in records.reuse(path, step)[1]


@pytest.mark.parametrize("holdout, fold, label, folder", [
    (0, 0, "test", "runs"),
    (10_000, 0, "validation (10000 held out of train)", "validation"),
    (10_000, 2, "validation (10000 held out of train, fold 2)", "validation-folds/fold-2"),
])
def test_the_evaluation_label_is_what_the_committed_records_say(holdout, fold, label, folder):
    assert records.evaluation_label(holdout, fold) == label
    paths = (records.DEFAULT_RUNS.parent / folder).glob("*/seed-*.json")
    assert {json.loads(path.read_text())["evaluated_on"] for path in paths} == {label}


def test_a_diverged_record_is_complete_only_for_runs_as_long_as_its_divergence(committed):
    path, step = committed
    record = json.loads(path.read_text())
    record["history"], record["diverged_at"] = record["history"][:11], 12
    path.write_text(json.dumps(record))
    assert records.reusable(path, step) is not None  # a rerun of 15 epochs diverges at 12 again
    assert records.reuse(path, step, epochs=5) == (None, "11 epochs, not 5")


def test_an_unreadable_record_is_not_reused_and_says_why(committed):
    path, step = committed
    path.write_text(json.dumps({"schema": 999}))
    record, why = records.reuse(path, step)
    assert record is None and why.startswith("unreadable") and "schema" in why


def test_a_record_from_another_float_path_is_named_as_such():
    """machine.float_path_differences: a record of another CPU or oneDNN cap is named; one made before provenance
    held the instruction sets is compared on what it holds."""
    here = {"device_name": machine.device_name("cpu"), **machine.float_path()}
    assert machine.float_path_differences({"provenance": dict(here)}) == []
    old = {k: v for k, v in here.items() if k not in ("cpu_capability", "onednn_isa", "onednn_isa_cap")}
    assert machine.float_path_differences({"provenance": old}) == ([] if here["onednn_isa_cap"] is None else ["onednn_isa_cap"])
    assert machine.float_path_differences({"provenance": {**here, "device_name": "Other CPU"}}) == ["device_name"]
    assert machine.float_path_differences({"provenance": {**here, "onednn_isa_cap": "ISA9", "onednn_isa": "Made-up ISA"}}) \
        == ["onednn_isa", "onednn_isa_cap"]

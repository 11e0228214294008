"""Run records: what they hold, and that writing them is all-or-nothing."""
import json

import pytest
import torch

from ablation import STEPS, build_model, records, train

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
    for key in ("commit", "dirty", "source_hash", "python", "torch", "torchvision", "device_name", "threads",
                "started", "finished", "wall_seconds"):
        assert key in p, key
    assert p["torch"] == torch.__version__ and p["threads"] == torch.get_num_threads()


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
        records._atomic_write(tmp_path / "x.json", fails)
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


def test_an_equivalence_claim_holds_for_the_engine_it_names_only(monkeypatch):
    now = records.source_hash()
    assert records.same_engine(now) and not records.same_engine("0123456789abcdef") and not records.same_engine(None)
    monkeypatch.setitem(records.EQUIVALENT_SOURCES, ("fedcba9876543210", "0123456789abcdef"), "shown for another engine")
    assert not records.same_engine("0123456789abcdef")
    monkeypatch.setitem(records.EQUIVALENT_SOURCES, (now, "0123456789abcdef"), "shown for this one")
    assert records.same_engine("0123456789abcdef")


def test_equivalence_claims_chain_but_only_through_a_shown_link(monkeypatch):
    now = records.source_hash()
    monkeypatch.setattr(records, "EQUIVALENT_SOURCES", {("bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa"): "b remade a",
                                                       ("dddddddddddddddd", "cccccccccccccccc"): "d remade c"})
    assert not records.same_engine("aaaaaaaaaaaaaaaa") and not records.same_engine("bbbbbbbbbbbbbbbb")
    records.EQUIVALENT_SOURCES[(now, "bbbbbbbbbbbbbbbb")] = "now remade b"
    assert records.same_engine("bbbbbbbbbbbbbbbb") and records.same_engine("aaaaaaaaaaaaaaaa")  # a through b
    assert not records.same_engine("cccccccccccccccc") and not records.same_engine("dddddddddddddddd")
    assert records.equivalent_engines("cccccccccccccccc") == {"cccccccccccccccc", "dddddddddddddddd"}


@pytest.fixture
def committed(tmp_path):
    """A copy of the final step's committed seed-0 record (a full run on the test set) with its weights,
    and its step."""
    from ablation.steps import FINAL_STEP

    source, weights = records.record_paths(records.DEFAULT_RUNS, FINAL_STEP, 0)
    path = tmp_path / "seed-0.json"
    path.write_text(source.read_text())
    path.with_suffix(".pt").write_bytes(weights.read_bytes())
    return path, STEPS[FINAL_STEP]


def test_a_committed_full_run_is_reusable_for_its_own_config_only(committed):
    from ablation.steps import with_overrides

    path, step = committed
    assert records.reusable(path, step)["seed"] == 0
    assert records.reusable(path, with_overrides(step, ["lr=0.1"])) is None  # another config
    assert records.reusable(path, step, holdout=10_000) is None  # evaluated elsewhere
    assert records.reusable(path, step, epochs=3) is None  # another length
    assert records.reusable(path.with_name("seed-9.json"), step) is None  # no record


@pytest.mark.parametrize("change, why", [({"dirty": True}, "uncommitted engine changes"),
                                         ({"source_hash": "0123456789abcdef"}, "made by engine source 0123456789abcdef"),
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

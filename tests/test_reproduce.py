"""The reproduction table on hand-made records: bit-identical, differs on the same set-up, other set-up, unpaired."""
import copy

import pytest

from ablation.runs import records

from ablation.runs import reproduce
from ablation.runs.runner import Task, train_task
from ablation.study.registry import get_step

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def quick_run(mnist):
    """(record, weights) of one quick run of 1-basic seed 0 (two epochs on 512 images)."""
    task = Task(get_step("1-basic"), [0], "cpu", 2, None, 0, 1, {"limit_train": 512, "limit_test": 500}, None)
    (encoded,) = train_task(task, mnist, bar=False)
    return encoded


def write(folder, record, weights, **provenance):
    record = copy.deepcopy(record)
    record["provenance"].update(provenance)
    records.write(record, weights, folder)
    return record


def relation(tmp_path, committed, fresh, fresh_weights, committed_weights=None):
    record, weights = committed
    write(tmp_path / "committed", record, committed_weights or weights)
    records.write(fresh, fresh_weights, tmp_path / "fresh")
    (pair,) = reproduce.compare(tmp_path / "fresh", tmp_path / "committed")
    return pair


def test_the_same_run_is_bit_identical(quick_run, tmp_path):
    pair = relation(tmp_path, quick_run, *quick_run)
    assert pair.relation == reproduce.IDENTICAL
    assert pair.fresh_final == pair.committed_final == quick_run[0]["history"][-1]["test_acc"]
    assert pair.fresh_lowest == min(row["test_acc"] for row in quick_run[0]["history"])


def test_another_history_on_the_same_set_up_is_a_defect(quick_run, tmp_path):
    fresh = copy.deepcopy(quick_run[0])
    fresh["history"][-1]["test_acc"] += 0.01  # one image more right
    assert relation(tmp_path, quick_run, fresh, quick_run[1]).relation == reproduce.DIFFERENT


def test_other_weights_under_the_same_history_are_a_defect(quick_run, tmp_path):
    import io

    import torch

    weights = torch.load(io.BytesIO(quick_run[1]), weights_only=True)
    weights[next(iter(weights))].view(-1)[0] += 1e-6
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    assert relation(tmp_path, quick_run, quick_run[0], buffer.getvalue()).relation == reproduce.DIFFERENT


def test_another_library_version_is_another_set_up_set_against_the_committed_seeds(quick_run, tmp_path):
    fresh = copy.deepcopy(quick_run[0])
    fresh["provenance"]["torch"] = "9.9.9"
    fresh["history"][-1]["test_acc"] += 0.5
    pair = relation(tmp_path, quick_run, fresh, quick_run[1])
    assert pair.relation == reproduce.OTHER_SETUP
    assert pair.detail.startswith("another torch; committed seeds: final ")
    cells, header = reproduce.rows([pair])
    assert len(cells[0]) == len(header) and cells[0][-1].startswith("other set-up (another torch")


def test_a_seed_the_study_never_ran_has_nothing_to_compare_with(quick_run, tmp_path):
    fresh = copy.deepcopy(quick_run[0])
    fresh["seed"] = 77
    pair = relation(tmp_path, quick_run, fresh, quick_run[1])
    assert pair.relation == reproduce.UNPAIRED and pair.committed_final is None
    assert reproduce.tally([pair]) == "1 no committed record"


def test_a_run_of_another_length_is_not_compared(quick_run, tmp_path):
    fresh = copy.deepcopy(quick_run[0])
    fresh["history"] = fresh["history"][:1]  # run --epochs 1 against a longer committed run
    pair = relation(tmp_path, quick_run, fresh, quick_run[1])
    assert pair.relation == reproduce.UNPAIRED and pair.detail == "1 epochs, the committed run 2"


def test_another_float_path_is_another_set_up_named_in_words_with_the_claim_judged_there(quick_run, tmp_path):
    """Issue 27: a run with oneDNN capped at AVX2 is another set-up, though the CPU, torch and threads are the same;
    the table names it as a user would, and a line per step and set-up says on how many seeds the floor held."""
    record, weights = quick_run
    here = {"device_name": "AMD EPYC", "cpu_capability": "AVX512", "onednn_isa": "Intel AVX-512", "onednn_isa_cap": None}
    write(tmp_path / "committed", record, weights, **here)
    for seed in (0, 1):
        fresh = copy.deepcopy(record)
        fresh["seed"] = seed
        fresh["provenance"].update(here, onednn_isa="Intel AVX2", onednn_isa_cap="AVX2")
        records.write(fresh, weights, tmp_path / "fresh")
    committed_1 = copy.deepcopy(record)
    committed_1["seed"] = 1
    write(tmp_path / "committed", committed_1, weights, **here)
    pairs = reproduce.compare(tmp_path / "fresh", tmp_path / "committed")
    assert [p.relation for p in pairs] == [reproduce.OTHER_SETUP] * 2
    assert pairs[0].detail.startswith("another onednn_isa, onednn_isa_cap;")
    assert pairs[0].setup == ("AMD EPYC, AVX512 (oneDNN: Intel AVX2, capped at AVX2), torch " + record["provenance"]["torch"]
                              + f", 1 thread, engine generation {records.GENERATION}")
    (line,) = reproduce.elsewhere(pairs, tmp_path / "committed")
    lowest = min(row["test_acc"] for row in record["history"])
    assert line.startswith(f"1-basic on {pairs[0].setup}: the floor (99.4 % in each of the last 5 epochs) held on 0 of 2 "
                           f"seeds, missed on seed 0 ({lowest:.2f} %), seed 1 ({lowest:.2f} %); lowest of the last 5 ")


def test_a_record_made_before_the_float_path_was_recorded_is_compared_on_what_it_holds(quick_run, tmp_path):
    """Records made before provenance held the float path (every committed one) pair with a fresh uncapped run
    as the same set-up, so the promise of bit-identity still applies to them; a capped run is another set-up."""
    record = copy.deepcopy(quick_run[0])
    record["provenance"].update(cpu_capability="AVX512", onednn_isa="Intel AVX-512", onednn_isa_cap=None)
    old = copy.deepcopy(record)
    for key in ("cpu_capability", "onednn_isa", "onednn_isa_cap", "host"):
        del old["provenance"][key]
    assert reproduce.setup_differences(record, old) == []
    capped = copy.deepcopy(record)
    capped["provenance"]["onednn_isa_cap"] = "AVX2"
    assert reproduce.setup_differences(capped, old) == ["onednn_isa_cap"]

"""The reproduction table on hand-made records: bit-identical, differs on the same set-up, other set-up, unpaired."""
import copy

import pytest

from ablation import records, reproduce
from ablation.runner import Task, train_task
from ablation.steps import get_step

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

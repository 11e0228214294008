"""The command line: tables, JSON, the quick run end to end, and clear errors with exit code 2."""
import json

import pytest
import torch

from ablation.cli import main
from ablation.study.registry import parse_seeds
from ablation.study.registry import STEPS

pytestmark = pytest.mark.fast


def test_steps_table_lists_every_step(capsys):
    assert main(["steps"]) == 0
    out = capsys.readouterr().out
    for step in STEPS.values():
        assert step.name in out and f"{step.params:,}" in out


def test_steps_json(capsys):
    assert main(["steps", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(STEPS)
    for row in rows:
        assert {"name", "params", "epochs", "batch_size", "goals"} <= set(row)
        assert row["params"] == STEPS[row["name"]].params


def test_summary_prints_layers_with_macs_and_receptive_field(capsys):
    assert main(["summary", "5-lr-schedule"]) == 0
    out = capsys.readouterr().out
    assert "MACs" in out and "RF" in out and "9,752" in out and "global average pool" in out
    assert "views" not in out


def test_summary_counts_every_view_of_a_step_evaluated_with_shifts(capsys):
    assert main(["summary", "18-shifted-views"]) == 0
    out = capsys.readouterr().out
    assert "evaluated over 5 views" in out and f"{5 * 839_680:,} MACs per test image" in out


def test_summary_prices_a_variant_network_before_it_is_trained(capsys):
    wide = "('conv3:8','conv3:10','conv1:8','pool','conv3:10','conv3:16','conv3:16','conv3p:16','gap','conv1:10')"
    assert main(["summary", "19-views-6k", "--set", f"layout={wide}"]) == 0
    out = capsys.readouterr().out
    assert "conv3x3 16→16 pad 1" in out and "7,952" in out and f"{7 * 839_680:,} MACs per test image" in out


@pytest.mark.parametrize("argv, message", [
    (["summary", "nope"], "unknown step"),
    (["summary", "12-wide-end", "--set", "layout=('conv3:8','tied3:8','gap','conv1:10')"], "bad layout token 'tied3:8'"),
    (["run", "--steps", "nope"], "unknown step"),
    (["run", "--seeds", "a-b"], "malformed seeds"),
    (["run", "--seeds", "1,1"], "malformed seeds"),
    (["run", "--epochs", "0"], "positive integer"),
    (["run", "--epochs", "-3"], "positive integer"),
    (["run", "--set", "nope=1", "--quick", "--out", "x"], "not a step field"),
    (["run", "--set", "tta=((29,0),)", "--quick", "--out", "x"], "not a pair of whole pixels"),
    (["run", "--set", "augment.until_epoch=7", "--quick", "--out", "x"], "Augment has no field 'until_epoch'"),
    (["run", "--set", "sam=0.05", "--quick", "--out", "x"], "'sam' is not a step field"),
    (["frobnicate"], "invalid choice"),
    (["run", "--fold", "2", "--quick", "--out", "x"], "needs --holdout"),
    (["run", "--backend", "ray", "--address", "garbage"], "argument --address: malformed address 'garbage'"),
    (["screen", "1-basic", "--set", "lr=0.1", "--backend", "ray", "--address", "head:99999"], "malformed address"),
    (["run", "--address", "auto", "--quick", "--out", "x"], "--address names a Ray cluster: it needs --backend ray"),
    (["run", "--backend", "ray", "--max-retries", "-5"], "--max-retries: must be a whole number from 0 to 100"),
    (["run", "--backend", "ray", "--max-retries", "-1"], "--max-retries: must be a whole number from 0 to 100"),
    (["run", "--backend", "ray", "--max-retries", "101"], "--max-retries: must be a whole number from 0 to 100"),
])
def test_bad_input_is_a_clear_error_with_exit_code_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--device", "cuda", "--quick", "--out", str(tmp_path / "runs")])
    assert exit_info.value.code == 2 and "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_quick_run_writes_records_and_prints_a_summary(data_dir, tmp_path, capsys):
    import subprocess
    import sys

    from ablation.runs.records import load_all, without_timings

    out = tmp_path / "runs-1"
    argv = ["run", "--quick", "--steps", "5-lr-schedule", "--seeds", "0-1", "--data-dir", str(data_dir), "--no-report"]
    assert main(argv + ["--out", str(out), "--jobs", "1"]) == 0
    assert "5-lr-schedule" in capsys.readouterr().out
    # Two worker processes, started the way users start them (python -m), give the same numbers.
    done = subprocess.run([sys.executable, "-m", "ablation", *argv, "--out", str(tmp_path / "runs-2"), "--jobs", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    histories = []
    for folder in (out, tmp_path / "runs-2"):
        files = sorted(p.name for p in (folder / "5-lr-schedule").iterdir())
        assert files == ["seed-0.json", "seed-0.pt", "seed-1.json", "seed-1.pt"]
        histories.append([without_timings(r["history"]) for r in load_all(folder)["5-lr-schedule"]])
    assert histories[0] == histories[1]


def test_interrupt_keeps_finished_records_and_writes_no_partial_one(data_dir, tmp_path, monkeypatch, capsys):
    import sys

    engine = sys.modules["ablation.engine.train"]  # the package re-exports a function named `train`
    real, calls = engine.train_many, []

    def interrupted_second_time(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "train_many", interrupted_second_time)
    out = tmp_path / "runs"
    code = main(["run", "--quick", "--steps", "5-lr-schedule", "--seeds", "0-1", "--out", str(out),
                 "--data-dir", str(data_dir), "--no-report", "--jobs", "1"])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "5-lr-schedule").iterdir()) == ["seed-0.json", "seed-0.pt"]


def test_kill_stops_a_command_as_ctrl_c_does_and_puts_the_handler_back(data_dir, tmp_path, monkeypatch, capsys):
    """SIGTERM (`kill PID`) is how a command started in the background of a script, which ignores SIGINT, is
    stopped: it must end as Ctrl-C does, not die mid-write."""
    import os
    import signal
    import sys
    import time

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises in here; without it the test process would be gone
        raise AssertionError("SIGTERM went unnoticed")

    monkeypatch.setattr(sys.modules["ablation.engine.train"], "train_many", killed)
    before = signal.getsignal(signal.SIGTERM)
    code = main(["run", "--quick", "--steps", "5-lr-schedule", "--seeds", "0", "--out", str(tmp_path / "runs"),
                 "--data-dir", str(data_dir), "--no-report", "--jobs", "1"])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before
    assert not list((tmp_path / "runs").glob("*/seed-*"))


@pytest.mark.parametrize("text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("0,2,7", [0, 2, 7]), ("1-2,5", [1, 2, 5])])
def test_seed_syntax(text, seeds):
    assert parse_seeds(text) == seeds


def test_a_fold_beyond_the_training_set_is_refused(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--holdout", "10000", "--fold", "6", "--quick", "--data-dir", str(data_dir), "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2 and "fold must be between 0 and 5" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """A runs folder holding a copy of the final step's committed seed 0 and a copy marked as made from
    uncommitted engine edits as seed 1, both as made under today's engine generation (the committed ones may
    await their retraining after a bump); and the seeds the (faked) engine is asked to train."""
    import sys

    from ablation.runs import records
    from ablation.study.registry import FINAL_STEP

    out = tmp_path / "runs"
    (out / FINAL_STEP).mkdir(parents=True)
    json_path, pt_path = records.record_paths(records.DEFAULT_RUNS, FINAL_STEP, 0)
    for seed in (0, 1):
        record = json.loads(json_path.read_text())
        record["seed"], record["provenance"]["dirty"] = seed, seed == 1
        record["provenance"]["generation"] = records.GENERATION
        (out / FINAL_STEP / f"seed-{seed}.json").write_text(json.dumps(record))
        (out / FINAL_STEP / f"seed-{seed}.pt").write_bytes(pt_path.read_bytes())
    trained = []

    def fake_train_many(step, seeds, **kwargs):  # notes what would train, trains nothing
        trained.extend(seeds)
        return []

    monkeypatch.setattr(sys.modules["ablation.engine.train"], "train_many", fake_train_many)
    return out, trained


def test_resume_keeps_what_is_recorded_and_trains_the_rest(recorded, data_dir, capsys):
    from ablation.study.registry import FINAL_STEP

    out, trained = recorded
    argv = ["run", "--steps", "final", "--seeds", "0-2", "--out", str(out), "--data-dir", str(data_dir),
            "--no-report", "--jobs", "1"]
    assert main(argv + ["--resume"]) == 0
    assert trained == [1, 2]  # seed 0 is kept; seed 1's record came from uncommitted code; seed 2 has none
    err = capsys.readouterr().err
    assert f"{FINAL_STEP}: seeds 0 already recorded" in err
    assert f"{FINAL_STEP} seed 1: the record under {out} is trained again: made from a tree with uncommitted engine changes" in err
    assert "seed 2:" not in err  # no record is nothing to explain
    trained.clear()
    assert main(argv) == 0
    assert trained == [0, 1, 2]  # without --resume, everything asked for trains



def test_the_final_step_trains_with_its_parent_and_a_seed_resume_keeps_trains_nothing(recorded, data_dir, monkeypatch):
    """18-shifted-views is 12-wide-end evaluated over more views: asked for together, each seed trains once, for
    both records; a seed whose 18-shifted-views record --resume keeps trains only 12-wide-end."""
    import sys

    out, _ = recorded
    calls = []
    monkeypatch.setattr(sys.modules["ablation.engine.train"], "train_many",
                        lambda step, seeds, views=(), **kw: calls.append((step.name, seeds, [v.name for v in views])) or [])
    assert main(["run", "--steps", "12-wide-end,final", "--seeds", "0-2", "--resume", "--out", str(out),
                 "--data-dir", str(data_dir), "--no-report", "--jobs", "1"]) == 0
    assert calls == [("12-wide-end", [0], []), ("12-wide-end", [1], ["18-shifted-views"]),
                     ("12-wide-end", [2], ["18-shifted-views"])]

def test_resume_with_every_seed_recorded_trains_nothing_on_a_gpu_too(recorded, data_dir, monkeypatch):
    import sys

    import torch

    out, trained = recorded  # on a GPU a step's seeds train as one group: none left must not be a group of 0
    monkeypatch.setattr(sys.modules["ablation.engine.train"], "resolve_device", lambda device: torch.device("cuda"))
    assert main(["run", "--steps", "final", "--seeds", "0", "--resume", "--out", str(out), "--data-dir", str(data_dir),
                 "--no-report"]) == 0
    assert trained == []


def test_the_report_of_another_records_folder_is_written_inside_it(recorded, data_dir):
    out, _ = recorded
    assert main(["run", "--steps", "final", "--seeds", "0", "--resume", "--out", str(out), "--data-dir",
                 str(data_dir), "--jobs", "1"]) == 0
    assert (out / "ablation.html").is_file() and not (out.parent / "ablation.html").exists()


def test_a_step_named_twice_trains_once(recorded, data_dir):
    out, trained = recorded
    assert main(["run", "--steps", "1-basic,1-basic", "--seeds", "3", "--out", str(out), "--data-dir", str(data_dir),
                 "--no-report", "--jobs", "1"]) == 0
    assert trained == [3]


def test_one_vocabulary_the_unknown_step_names_final_and_all_and_a_quick_summary_says_it_judges_nothing(
        data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--steps", "nope"])
    assert "or 'final' (the step the mission is judged on" in capsys.readouterr().err
    assert main(["run", "--quick", "--steps", "1-basic", "--seeds", "0", "--data-dir", str(data_dir), "--jobs", "1",
                 "--runs", str(tmp_path), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "meet the mission" in out and "its own goals, all seeds" in out and "0 of 1" in out
    assert "(--quick: a smoke run of one epoch on 2,048 images; these numbers judge nothing)" in out

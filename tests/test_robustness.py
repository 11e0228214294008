"""Issue 21: nothing committed is overwritten, every bad input is refused before training (exit 2, one line),
no value reaches the filesystem, and a record is whole or absent. One test per measured problem, then a
property test of the command line.

Training is faked wherever a test is about what happens around it (`fake_engine`): the tests check what
is refused, written and read, in milliseconds, and a refused run must not even reach the fake.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import string
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablation.runs import records
from ablation.cli import main
from ablation.study.registry import FINAL_STEP, STEPS, with_overrides
from ablation.engine import RunResult

pytestmark = pytest.mark.fast

STEP = "10-narrow-6k"
STUDY = records.PACKAGE.parent / "reports"  # the committed records, wherever the test runs from


def fake_result(step, seed: int, *, weights: float = 0.0, diverged: bool = False, images: int = 2048) -> RunResult:
    """A one-epoch result of `step` as the engine returns it, with made-up numbers and a one-tensor state."""
    acc = float("nan") if diverged else 50.0
    row = {"epoch": 1, "train_loss": 1.0, "train_acc": acc, "test_loss": 1.0, "test_acc": acc, "lr": step.lr,
           "seconds": 0.1}
    return RunResult(step, seed, step.params, [row], 1 if diverged else None, {"w": torch.full((3,), weights)},
                     engine={"device": "cpu", "threads": 1, "seeds_per_pass": 1, "train_images": images},
                     started=0.0, finished=1.0)


@pytest.fixture
def fake_engine(monkeypatch):
    """train_many replaced by one that records what it was asked and returns fake results at once."""
    trained = []

    def fake_train_many(step, seeds, **kwargs):
        trained.extend((step.name, s) for s in seeds)
        return [fake_result(step, s) for s in seeds]

    monkeypatch.setattr(sys.modules["ablation.engine.train"], "train_many", fake_train_many)
    return trained


def refusal(argv: list[str], capsys) -> str:
    """The one line a refused command prints; fails unless it exits 2 with exactly one line on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1, err
    return err.strip()


def copy_committed(into: Path, step: str = STEP, folder: str = "runs") -> Path:
    """A copy of a committed step's records (full runs) in `into`/<step>; returns `into`."""
    shutil.copytree(STUDY / folder / step, into / step)
    return into


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# 1. Committed records are protected by what they are, not by how their path is spelled.

@pytest.mark.parametrize("spelling", ["reports/../reports/runs", "./reports/runs/", "ABSOLUTE"])
def test_1_a_quick_run_into_the_study_records_is_refused_however_the_path_is_spelled(
        spelling, data_dir, tmp_path, monkeypatch, capsys, fake_engine):
    monkeypatch.chdir(tmp_path)
    copy_committed(tmp_path / "reports" / "runs")
    before = tree(tmp_path)
    out = str(tmp_path / "reports" / "runs") if spelling == "ABSOLUTE" else spelling
    line = refusal(["run", "--quick", "--steps", STEP, "--seeds", "0", "--out", out, "--data-dir", str(data_dir),
                    "--no-report", "--jobs", "1"], capsys)
    assert line == ("python -m ablation: error: --quick runs are smoke tests: give them their own --runs folder, "
                    "not the reference records")
    assert tree(tmp_path) == before and fake_engine == []


@pytest.mark.parametrize("spelling", ["reports/../reports/validation", "ABSOLUTE"])
def test_1_a_quick_screen_into_the_study_folds_is_refused_however_the_path_is_spelled(
        spelling, data_dir, tmp_path, monkeypatch, capsys, fake_engine):
    monkeypatch.chdir(tmp_path)
    copy_committed(tmp_path / "reports" / "validation", "12-wide-end", "validation")
    before = tree(tmp_path)
    validation = str(tmp_path / "reports" / "validation") if spelling == "ABSOLUTE" else spelling
    line = refusal(["screen", "12-wide-end", "--set", "lr=0.1", "--quick", "--folds", "0", "--validation", validation,
                    "--data-dir", str(data_dir), "--jobs", "1"], capsys)
    assert "--quick screens are smoke tests" in line
    assert tree(tmp_path) == before and fake_engine == []


@pytest.mark.parametrize("partial", [["--quick"], ["--epochs", "1"]], ids=["quick", "fewer-epochs"])
def test_1_a_partial_run_into_any_folder_holding_the_steps_full_runs_is_refused(
        partial, data_dir, tmp_path, capsys, fake_engine):
    out = copy_committed(tmp_path / "anywhere")
    before = tree(out)
    line = refusal(["run", *partial, "--steps", STEP, "--seeds", "0", "--out", str(out), "--data-dir", str(data_dir),
                    "--no-report", "--jobs", "1"], capsys)
    kind = "--quick" if partial == ["--quick"] else "1-epoch"
    assert line == (f"python -m ablation: error: --runs {out} holds {STEP} runs of another length (seeds 0, 1, 2, 3, 4): "
                    f"a {kind} run would replace or mix with them; give it its own --runs folder")
    assert tree(out) == before and fake_engine == []


def test_1_a_shortened_run_resumes_in_its_own_folder(data_dir, tmp_path, capsys, fake_engine):
    """Issue 27: runs shortened with --epochs N on the full training set are judged by their epochs, not only
    their images: --resume keeps the N-epoch ones already there and trains the rest; another length is refused."""
    out = tmp_path / "short"
    committed = json.loads((STUDY / "runs" / STEP / "seed-0.json").read_text())
    record = {**committed, "history": committed["history"][:1]}
    record["provenance"]["generation"] = records.GENERATION  # the committed one may await its retraining
    records.write(record, (STUDY / "runs" / STEP / "seed-0.pt").read_bytes(), out)
    assert main(["run", "--epochs", "1", "--resume", "--steps", STEP, "--seeds", "0-1", "--out", str(out),
                 "--data-dir", str(data_dir), "--no-report", "--jobs", "1"]) == 0
    assert fake_engine == [(STEP, 1)], "the 1-epoch record of seed 0 was not kept"
    assert "seeds 0 already recorded" in capsys.readouterr().err
    line = refusal(["run", "--epochs", "2", "--steps", STEP, "--seeds", "0", "--out", str(out), "--data-dir",
                    str(data_dir), "--no-report", "--jobs", "1"], capsys)
    assert f"holds {STEP} runs of another length (seeds 0" in line


def test_1_a_quick_screen_beside_full_fold_runs_is_refused(data_dir, tmp_path, capsys, fake_engine):
    validation = copy_committed(tmp_path / "v", "12-wide-end", "validation")
    line = refusal(["screen", "12-wide-end", "--set", "lr=0.1", "--quick", "--folds", "0", "--validation",
                    str(validation), "--data-dir", str(data_dir), "--jobs", "1"], capsys)
    assert "holds full runs of 12-wide-end or the variant (fold 0)" in line and fake_engine == []


# 2. A --set value is never a path; a long variant has a short folder.

def test_2_a_variant_name_never_reaches_the_filesystem(tmp_path):
    escaping = replace(STEPS["1-basic"], name="1-basic[/../../../esc]")  # no --set field takes free text now
    layout = ("conv3:8",) * 40 + ("gap", "conv1:10")
    long = with_overrides(STEPS["1-basic"], [f"layout={layout!r}", "tta=((1,0),)", "tta_rotations=(5.0,)",
                                             "augment.rotation=7.0", "lr=0.05"])
    out = tmp_path / "deep" / "out"
    for step in (escaping, long):
        path = records.save(fake_result(step, 0), out)
        assert path.parent.parent == out and path.parent.name.startswith("1-basic~")
        assert len(path.parent.name) <= records.MAX_FOLDER_NAME
        assert records.load(path)["step"] == step.name  # the full name and config are inside
    assert [p.name for p in tmp_path.iterdir()] == ["deep"] and [p.name for p in (tmp_path / "deep").iterdir()] == ["out"]
    assert set(records.load_all(out)) == {escaping.name, long.name}


def test_2_a_short_plain_variant_keeps_its_readable_folder():
    assert records.folder_name("7-onecycle[lr=0.1]") == "7-onecycle[lr=0.1]"
    assert records.folder_name("12-wide-end[schedule.final_epoch=15,ema=0.998]") == \
        "12-wide-end[schedule.final_epoch=15,ema=0.998]"
    assert records.folder_name("12-wide-end[tta=((1,0),(-1,0))]").startswith("12-wide-end~")


def test_2_every_committed_record_is_still_found_where_it_is():
    """The committed folders keep their names: record_paths finds each record under its own step name."""
    paths = sorted(STUDY.glob("**/seed-*.json"))
    assert len(paths) > 400
    for path in paths:
        record = json.loads(path.read_text())
        assert records.record_paths(path.parent.parent, record["step"], record["seed"])[0] == path


# 3. Problems with the output are found before training; a damaged record is named and skipped.

@pytest.mark.parametrize("out, why", [("a-file", "is a file, not a folder"),
                                      ("x" * 300, "records cannot be written there (File name too long)")])
def test_3_an_output_that_cannot_hold_records_is_refused_before_training(out, why, data_dir, tmp_path, capsys,
                                                                         fake_engine):
    (tmp_path / "a-file").write_text("not a folder")
    line = refusal(["run", "--quick", "--steps", STEP, "--seeds", "0", "--out", str(tmp_path / out), "--data-dir",
                    str(data_dir), "--no-report", "--jobs", "1"], capsys)
    assert line.startswith(f"python -m ablation: error: --runs {tmp_path / out}") and line.endswith(why)
    assert fake_engine == []


def test_3_a_damaged_record_is_named_and_skipped_and_never_stops_a_run(data_dir, tmp_path, capsys, fake_engine):
    out = tmp_path / "runs"
    (out / "old").mkdir(parents=True)
    (out / "old" / "seed-0.json").write_text("{ half a record")
    (out / "old" / "seed-1.json").write_text(json.dumps({"schema": records.SCHEMA_VERSION, "step": "old"}))
    assert main(["run", "--quick", "--steps", STEP, "--seeds", "0", "--out", str(out), "--data-dir", str(data_dir),
                 "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert f"warning: skipped a damaged record: {out / 'old' / 'seed-0.json'}: unreadable" in captured.err
    assert f"warning: skipped a damaged record: {out / 'old' / 'seed-1.json'}: not a run record" in captured.err
    assert STEP in captured.out and fake_engine == [(f"{STEP}", 0)]
    assert list(records.load_all(out)) == [STEP]
    assert main(["report", "--runs", str(out), "--out", str(tmp_path / "r.md"), "--format", "md"]) == 0


# 4. --resume checks the weights.

@pytest.mark.parametrize("damage", ["missing", "garbage", "other-digest"])
def test_4_resume_retrains_a_record_whose_weights_are_missing_or_not_its_own(damage, data_dir, tmp_path, capsys,
                                                                             fake_engine):
    out = tmp_path / "runs"
    source_json, source_pt = records.record_paths(STUDY / 'runs', FINAL_STEP, 0)
    json_path, pt_path = records.record_paths(out, FINAL_STEP, 0)
    json_path.parent.mkdir(parents=True)
    record = json.loads(source_json.read_text())
    record["provenance"]["generation"] = records.GENERATION  # the committed one may await its retraining
    shutil.copy(source_pt, pt_path)
    if damage == "missing":
        pt_path.unlink()
    elif damage == "garbage":
        pt_path.write_bytes(b"not a tensor file")
    else:
        record["weights_sha256"] = "0" * 64
    json_path.write_text(json.dumps(record))
    assert main(["run", "--steps", "final", "--seeds", "0", "--resume", "--out", str(out), "--data-dir",
                 str(data_dir), "--no-report", "--jobs", "1"]) == 0
    assert fake_engine == [(FINAL_STEP, 0)]
    assert f"{FINAL_STEP} seed 0: the record under {out} is trained again: its weights {pt_path}" in capsys.readouterr().err


def test_4_a_legacy_record_without_a_digest_is_kept_when_its_weights_load(data_dir, tmp_path, fake_engine):
    out = tmp_path / "runs"
    source_json, source_pt = records.record_paths(STUDY / 'runs', FINAL_STEP, 0)
    json_path, pt_path = records.record_paths(out, FINAL_STEP, 0)
    json_path.parent.mkdir(parents=True)
    record = json.loads(source_json.read_text())
    record.pop("weights_sha256", None)  # as records were before they named their weights
    record["provenance"]["generation"] = records.GENERATION
    json_path.write_text(json.dumps(record))
    shutil.copy(source_pt, pt_path)
    assert main(["run", "--steps", "final", "--seeds", "0", "--resume", "--out", str(out), "--data-dir",
                 str(data_dir), "--no-report", "--jobs", "1"]) == 0
    assert fake_engine == []


# 5. A record is whole or absent.

def test_5_a_kill_between_publishing_the_weights_and_the_json_leaves_no_mismatched_record(tmp_path, monkeypatch):
    step = STEPS[STEP]
    json_path, pt_path = records.record_paths(tmp_path, STEP, 0)
    records.save(fake_result(step, 0, weights=1.0), tmp_path)
    real_replace, calls = os.replace, []

    def killed_before_the_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(records.os, "replace", killed_before_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        records.save(fake_result(step, 0, weights=2.0), tmp_path)
    monkeypatch.undo()
    # Either no record (the run is retrained), or a JSON that names exactly the weights beside it.
    assert not json_path.exists() or records.load(json_path)["weights_sha256"] == records.file_sha256(pt_path)
    assert not list(tmp_path.rglob("*.tmp"))


def test_5_a_record_names_its_weights_digest_and_is_readable_like_any_file(tmp_path):
    path = records.save(fake_result(STEPS[STEP], 0), tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    for p in (path, path.with_suffix(".pt")):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask
    assert records.load(path)["weights_sha256"] == records.file_sha256(path.with_suffix(".pt"))
    assert records.weights_problem(records.load(path), path.with_suffix(".pt")) == ""


# 7. Invalid values are refused before anything trains: by the CLI in one line, by the library alike.

BAD_SETS = [
    ("dropout=1.5", "dropout=1.5 is not allowed: a probability in [0, 1)"),
    ("dropout=-0.5", "dropout=-0.5 is not allowed: a probability in [0, 1)"),
    ("ema=1.5", "ema=1.5 is not allowed: a decay in [0, 1) (0: off)"),
    ("lr=abc", "lr='abc' is not allowed: a finite learning rate > 0"),
    ("lr=nan", "lr='nan' is not allowed: a finite learning rate > 0"),
    ("lr=-0.1", "lr=-0.1 is not allowed: a finite learning rate > 0"),
    ("batch_size=0", "batch_size=0 is not allowed: a whole number of images from 1 to 60,000"),
    ("batch_size=1.5", "batch_size=1.5 is not allowed: a whole number of images from 1 to 60,000"),
    ("batch_size=-5", "batch_size=-5 is not allowed: a whole number of images from 1 to 60,000"),
    ("layout=garbage", "layout='garbage' is not allowed: a tuple of layout tokens"),
    ("layout=('conv3:10',)", "layout=('conv3:10',) is not allowed: layout ('conv3:10',) leaves a (26, 26) map"),
    ("optimizer=adam", "override 'optimizer=adam': 'optimizer' is not a step field"),  # removed (issue 28)
    ("schedule.kind=foo", "schedule.kind='foo' is not allowed: one of 'constant', 'step', 'onecycle'"),
    ("label_smoothing=0.1", "override 'label_smoothing=0.1': 'label_smoothing' is not a step field"),  # removed (issue 28)
    ("distill.weight=0.5", "override 'distill.weight=0.5': 'distill' is not a step field"),  # removed (issue 28)
    ("augment.elastic=2.0", "override 'augment.elastic=2.0': Augment has no field 'elastic'"),  # removed (issue 28)
]


@pytest.mark.parametrize("assignment, message", [b for b in BAD_SETS if b[1]], ids=[b[0] for b in BAD_SETS if b[1]])
def test_7_a_bad_set_value_is_refused_in_one_line_before_anything_is_loaded(assignment, message, tmp_path, capsys,
                                                                            fake_engine):
    line = refusal(["run", "--quick", "--steps", STEP, "--set", assignment, "--out", str(tmp_path / "out"),
                    "--data-dir", str(tmp_path / "no-data")], capsys)
    assert line.startswith(f"python -m ablation: error: {message}")
    assert list(tmp_path.iterdir()) == [] and fake_engine == []


@pytest.mark.parametrize("assignment, message", [b for b in BAD_SETS if b[1] and "layout=(" not in b[0]],
                         ids=[b[0] for b in BAD_SETS if b[1] and "layout=(" not in b[0]])
def test_7_the_library_refuses_what_the_cli_refuses(assignment, message):
    with pytest.raises(ValueError) as error:
        with_overrides(STEPS[STEP], [assignment])
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("argv, message", [
    (["run", "--seeds", "99999999999999999999"], "malformed seeds '99999999999999999999'"),
    (["run", "--seeds", "0-99999999999"], "malformed seeds '0-99999999999'"),
    (["run", "--seeds", "0-"], "malformed seeds '0-'"),
    (["run", "--epochs", "99999999999999999999"], "must be a positive integer up to 10,000"),
    (["report", "--runs", "no-such-folder"], "--runs no-such-folder is not a folder of records"),
    (["screen", STEP, "--set", "lr=0.1", "--min-gain", "nan"], "--min-gain nan is not allowed: a gain in percent"),
    (["screen", STEP, "--set", "lr=0.1", "--min-gain", "inf"], "--min-gain inf is not allowed: a gain in percent"),
], ids=["seed-overflow", "seed-range-too-long", "open-range", "epochs-overflow", "report-runs-typo", "min-gain-nan",
        "min-gain-inf"])
def test_7_8_bad_arguments_are_refused_in_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert message in refusal(argv + (["--quick", "--out", "x"] if argv[0] == "run" else []), capsys)
    assert list(tmp_path.iterdir()) == []


def test_7_a_bad_thread_count_in_the_environment_is_refused(tmp_path, monkeypatch, capsys, fake_engine):
    monkeypatch.setenv("ABLATION_THREADS", "abc")
    line = refusal(["run", "--quick", "--steps", STEP, "--out", str(tmp_path / "out")], capsys)
    assert line == "python -m ablation: error: ABLATION_THREADS must be a positive integer up to 256, got 'abc'"
    assert fake_engine == []


def test_7_a_report_out_that_is_a_folder_is_refused(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    line = refusal(["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path)], capsys)
    assert line == (f"python -m ablation: error: --out {tmp_path} is a folder: name the report's file, e.g. "
                    f"{tmp_path / 'ablation.html'}")


# 8. The smaller ones.

def test_8_a_diverged_run_reads_diverged_in_the_summary(data_dir, tmp_path, capsys, monkeypatch):
    def diverging(step, seeds, **kwargs):
        return [fake_result(step, s, diverged=s == 1) for s in seeds]

    monkeypatch.setattr(sys.modules["ablation.engine.train"], "train_many", diverging)
    out = tmp_path / "runs"
    for seeds, cell in (("1", "diverged"), ("0-1", "50.00 ± 0.00 (seed 1 diverged)")):
        assert main(["run", "--quick", "--steps", STEP, "--seeds", seeds, "--out", str(out), "--data-dir",
                     str(data_dir), "--no-report", "--jobs", "1"]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(STEP))
        assert cell in row and "nan" not in row


def test_8_a_data_root_one_level_too_deep_gets_a_hint_and_leaves_nothing(data_dir, tmp_path, capsys):
    from ablation.engine.data import SHA256

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in SHA256:
        (raw / name).symlink_to(Path(data_dir, "MNIST", "raw", name).resolve())
    assert main(["run", "--quick", "--steps", STEP, "--data-dir", str(raw), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: MNIST's files are in {raw}, but the data root is the folder that holds MNIST/raw: give --data-dir "
        f"{tmp_path} (or $ABLATION_DATA={tmp_path})")
    assert sorted(p.name for p in raw.iterdir()) == sorted(SHA256) and not (tmp_path / "out").exists()


# The command line, for generated input: it succeeds, or exits 2 with one line; never a traceback, and nothing
# is written outside --out.

# The step's fields, and names that are none (a typo, a knob removed in issue 28, the words, the name).
FIELDS = ["lr", "dropout", "batch_size", "epochs", "ema", "momentum", "weight_decay", "layout", "tta", "tta_rotations",
          "seeds", "batchnorm", "schedule.kind", "schedule.final_epoch", "schedule.warmup", "schedule.step_epochs",
          "augment.rotation", "augment.brightness", "augment.contrast", "goals.max_params", "goals.accuracy_floor",
          "confirmation_seeds", "name", "nope", "schedule.nope", "seed_report.params", "sam", "augment.elastic", "notes"]
VALUES = st.one_of(
    st.sampled_from(["0", "0.1", "1", "-1", "1.5", "nan", "inf", "1e999", "True", "None", "()", "[]", "'sgd'", "adam",
                     "((1,0),)", "(5.0,)", "('conv3:8','gap','conv1:10')", "('conv3:10',)", "/../../esc", "../x",
                     "a/b", "(" * 50, "10**400", "9" * 30, "{}", "'x'*10", "8-no-dropout", "onecycle"]),
    st.integers(-10, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet=string.printable, max_size=30),
)
SEEDS = st.one_of(st.none(), st.sampled_from(["0", "0-1", "0-", "-1", "1,1", "99999999999999999999", "0-99999999999",
                                              "a", "", "٣", " 1 "]),
                  st.text(alphabet="0123456789-,", max_size=12))
EPOCHS = st.one_of(st.none(), st.sampled_from(["1", "0", "-1", "1.5", "x", "99999999999999999999"]))
# Below sandbox/base/inner, so that even '../..' stays inside the sandbox the test inspects.
OUT = st.lists(st.sampled_from(["out", "a b", "..", ".", "x" * 120, "ü", "-", "[lr=0.1]"]), min_size=1, max_size=2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sets=st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), max_size=3), seeds=SEEDS, epochs=EPOCHS, out=OUT)
def test_the_cli_succeeds_or_refuses_in_one_line_and_writes_only_inside_out(sets, seeds, epochs, out, data_dir,
                                                                            tmp_path_factory, fake_engine):
    sandbox = tmp_path_factory.mktemp("cli")
    out_dir = sandbox.joinpath("base", "inner", *out)
    argv = ["run", "--quick", "--steps", STEP, "--out", str(out_dir), "--data-dir", str(data_dir), "--no-report",
            "--jobs", "1"]
    for field, value in sets:
        argv += ["--set", f"{field}={value}"]
    argv += ["--seeds", seeds] if seeds is not None else ["--seeds", "0"]
    argv += ["--epochs", epochs] if epochs is not None else []
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            assert e.code == 2 and len(err.getvalue().splitlines()) == 1, err.getvalue()
        else:  # what passes the checks trains (here: the fake engine) and is summarised
            assert code == 0, err.getvalue()
    inside = out_dir.resolve()
    for path in sandbox.rglob("*"):
        assert path.is_dir() or inside in path.resolve().parents, path

"""The two backends: Ray writes what the process pool writes, on both nodes of a cluster; faults (a killed worker,
a failing task, Ctrl-C, Ray missing, an address that cannot be used) lose no finished record and name what they
stopped, and a recap ends the batch. Quick runs only; one Ray cluster of two nodes (1 CPU each) on this machine
for the module."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from ablation.runs import records
from ablation.cli import main
from ablation.runs import ray_backend
from ablation.runs import runner
from ablation.runs.runner import Task, run_tasks
from ablation.study.registry import STEPS, get_step

pytestmark = pytest.mark.fast
TIMINGS = {"started", "finished", "wall_seconds"}


# The tests that use it run on one xdist worker (one Ray for the session, not one per worker, and no test
# can take another worker's Ray process for its own).
ON_RAY = pytest.mark.xdist_group("ray")


def quick_tasks(out: Path, runs, **changes) -> list[Task]:
    quick = {"limit_train": 512, "limit_test": 500, **changes.pop("quick", {})}
    return [Task(get_step(name), [seed], "cpu", 1, None, changes.get("holdout", 0), 1, quick, out)
            for name, seed in runs]


def comparable(path: Path) -> dict:
    """A record without what only says when it ran."""
    record = json.loads(path.read_text())
    record["history"] = records.without_timings(record["history"])
    record["provenance"] = {k: v for k, v in record["provenance"].items() if k not in TIMINGS}
    return record


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


@ON_RAY
def test_ray_writes_the_records_and_weights_the_process_pool_writes(ray_local, mnist, tmp_path):
    runs = [("1-basic", 0), ("1-basic", 1), ("18-shifted-views", 0), ("18-shifted-views", 1)]
    committed = tree(records.DEFAULT_RUNS)
    assert ray_backend.run_tasks(quick_tasks(tmp_path / "ray", runs), mnist) == []
    assert run_tasks(quick_tasks(tmp_path / "pool", runs), 2, data=mnist) == []
    for name, seed in runs:
        (ray_json, ray_pt), (pool_json, pool_pt) = (records.record_paths(tmp_path / b, name, seed) for b in ("ray", "pool"))
        assert comparable(ray_json) == comparable(pool_json), f"{name} seed {seed}"
        assert ray_pt.read_bytes() == pool_pt.read_bytes(), f"{name} seed {seed}: weights differ"
    assert tree(records.DEFAULT_RUNS) == committed, "the committed study was written to"


@ON_RAY
def test_a_study_on_two_nodes_trains_on_both_and_each_line_names_where(ray_local, mnist, tmp_path, monkeypatch, capsys):
    seen, result = [], ray_backend.result
    monkeypatch.setattr(ray_backend, "result", lambda *a: (found := result(*a), seen.append(found[1]))[0])
    runs = [("1-basic", seed) for seed in range(4)]
    assert ray_backend.run_tasks(quick_tasks(tmp_path, runs, quick={"limit_train": 256}), mnist) == []
    nodes = {node["NodeID"] for node in ray_local.nodes() if node["Alive"]}
    assert len(nodes) == 2 and {where["node"] for where in seen} == nodes, "one node trained every run"
    assert len(list((tmp_path / "1-basic").glob("seed-*.json"))) == 4
    err = capsys.readouterr().err
    for where in seen:  # one machine: both nodes have its host name and IP
        assert f" on {where['host']} ({where['ip']}); " in err
    assert "recap: 4 of 4 runs written in " in err and "; none failed" in err


def ray_worker_waiting(session: str) -> int | None:
    """The PID of a Ray worker process of `session` (the module's Ray) while it runs first_attempt_waits (Ray names
    the process after its task; its parent, a raylet, names the session's folder): another test session's Ray on
    this machine is left alone."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::first_attempt_waits"):
                parent = next(line.split()[1] for line in (proc / "status").read_text().splitlines()
                              if line.startswith("PPid:"))
                if f"/{session}/".encode() in Path(f"/proc/{parent}/cmdline").read_bytes():
                    return int(proc.name)
        except OSError:
            continue
    return None


def first_attempt_waits(task, arrays):
    """ray_backend.train_remote, whose first attempt waits until its worker is killed (pickled by value, so the
    worker runs this test's code)."""
    import threading

    from ablation.runs import ray_backend

    if ray_backend.attempt_number() == 0:
        threading.Event().wait()
    return ray_backend.train_remote(task, arrays)


@ON_RAY
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker's PID in /proc")
def test_a_killed_worker_is_retried_its_record_written_once_and_the_recap_names_it(ray_local, mnist, tmp_path,
                                                                                   monkeypatch, capsys, request):
    killed, writes = [], []
    write = records.write
    monkeypatch.setattr(records, "write", lambda *a, **k: writes.append(a[0]["seed"]) or write(*a, **k))

    session = ray_local.get_runtime_context().get_session_name()
    # The first attempt waits to be killed, so the kill always lands mid-task, on a machine of any speed.
    ray_local.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    request.addfinalizer(lambda: ray_local.cloudpickle.unregister_pickle_by_value(sys.modules[__name__]))
    monkeypatch.setattr(ray_backend, "train_remote", first_attempt_waits)

    def kill_first_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if pid := ray_worker_waiting(session):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    errors = ray_backend.run_tasks(quick_tasks(tmp_path, [("1-basic", 3)], quick={"limit_train": 4096}), mnist,
                                   max_retries=2)
    killer.join()
    assert killed, "no Ray worker was seen training"
    assert errors == [] and writes == [3]
    assert sorted(p.name for p in (tmp_path / "1-basic").iterdir()) == ["seed-3.json", "seed-3.pt"]
    err = capsys.readouterr().err
    assert ", attempt 2; all done -> " in err
    assert "recap: 1 of 1 runs written in " in err and "; 1 retried:\n" in err
    assert "\n  1-basic seed 3 retried: written by attempt 2 (its worker was lost 1 time) on " in err


@ON_RAY
def test_a_failing_task_is_named_the_others_are_written_and_the_recap_names_it(ray_local, mnist, tmp_path, capsys):
    tasks = quick_tasks(tmp_path, [("1-basic", 0)]) + quick_tasks(tmp_path, [("1-basic", 1)], holdout=70_000)
    errors = ray_backend.run_tasks(tasks, mnist)
    assert len(errors) == 1 and errors[0].startswith("1-basic seed 1 (fold 0) failed: ValueError: holdout size")
    assert records.record_paths(tmp_path, "1-basic", 0)[0].exists()
    assert not records.record_paths(tmp_path, "1-basic", 1)[0].exists()
    err = capsys.readouterr().err
    assert "error: 1-basic seed 1 (fold 0) failed" in err
    recap = err.split("recap: ")[1].splitlines()
    assert recap[0].startswith("1 of 2 runs written in ") and recap[0].endswith("; 1 task failed:")
    assert recap[1].startswith("  1-basic seed 1 (fold 0) failed: ValueError: holdout size") and len(recap) == 2


def free_port() -> int:
    """A local TCP port nothing listens on (just released by the OS)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", [["run", "--steps", "1-basic", "--seeds", "0"], ["screen", "1-basic", "--set", "lr=0.1"]])
def test_an_address_where_nothing_answers_is_one_line_and_exit_2_before_mnist_loads(command, tmp_path, monkeypatch,
                                                                                    capsys):
    pytest.importorskip("ray")
    from ablation.engine import data

    monkeypatch.setattr(data, "load_mnist", lambda *a, **k: pytest.fail("MNIST was loaded"))
    # The probe answers before Ray is asked to connect (which retries for 20 s), however fast the machine.
    monkeypatch.setattr(ray_backend, "connect", lambda *a, **k: pytest.fail("Ray was asked to connect"))
    port = free_port()
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--backend", "ray", "--address", f"127.0.0.1:{port}", "--quick", "--runs" if command[0] == "run"
              else "--validation", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == (f"error: --address 127.0.0.1:{port}: nothing answers at 127.0.0.1 port {port} (connection refused): "
                   f"is the Ray head started there (`ray start --head --port {port}`), and is the port open from here?\n")
    assert not (tmp_path / "x").exists()


def test_auto_without_a_local_cluster_is_one_line(monkeypatch):
    pytest.importorskip("ray")

    def no_cluster(*args, **kwargs):  # what ray.init(address="auto") raises where no Ray runs on this machine
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to by "
                              "setting `--address` flag or `RAY_ADDRESS` environment variable.")

    monkeypatch.setattr(ray_backend, "connect", no_cluster)
    with pytest.raises(ray_backend.RayUnreachable) as error:
        ray_backend.check_address("auto")
    assert str(error.value) == ("--address auto: no Ray cluster runs on this machine (start one with `ray start "
                                "--head`, or give HOST:PORT of the head)")


def test_a_token_the_cluster_refuses_is_one_line_naming_what_to_set(monkeypatch):
    """What ray.init(address=HOST:PORT) raises after 20 s of retries where the cluster has token authentication on
    and this process has no RAY_AUTH_MODE=token (Ray 2.60, seen against `ray start --head` with a token)."""
    pytest.importorskip("ray")

    def refused(*args, **kwargs):
        try:
            raise RuntimeError("Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
                               '  File "python/ray/includes/common.pxi", line 119, in ray._raylet.check_status\n'
                               "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token "
                               "is missing or incorrect. Note: RAY_AUTH_MODE is currently 'disabled' (not 'token').")
        except RuntimeError as e:
            raise ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:6379") from e

    monkeypatch.setattr(ray_backend, "_probe", lambda address: None)
    monkeypatch.setattr(ray_backend, "connect", refused)
    with pytest.raises(ray_backend.RayUnreachable) as error:
        ray_backend.check_address("127.0.0.1:6379")
    assert str(error.value).startswith("--address 127.0.0.1:6379: RPC error: InvalidAuthToken: Authentication token "
                                       "is missing or incorrect. Ray's token authentication is on there: on this "
                                       "machine set RAY_AUTH_MODE=token and give it the head's token")
    assert "\n" not in str(error.value)


class SlowTierConfig:
    """What pytest_collection_finish reads of a `pytest -m slow --backend ray` session's config."""

    def __init__(self, runs_dir: Path, **options):
        self.options = {"--backend": "ray", "--address": None, "collectonly": False, "numprocesses": None,
                        "--reuse-records": False, "--device": "cpu", "--data-dir": None, "--runs-dir": str(runs_dir),
                        **options}
        self.said: list[str] = []  # what the session wrote to the terminal
        reporter = SimpleNamespace(write_line=self.said.append)
        self.pluginmanager = SimpleNamespace(get_plugin=lambda name: reporter if name == "terminalreporter" else None)

    def getoption(self, name, default=None):
        return self.options.get(name, default)


def slow_tier_session(tmp_path, **options):
    item = SimpleNamespace(callspec=SimpleNamespace(params={"run_case": (get_step("1-basic"), 0)}))
    return SimpleNamespace(config=SlowTierConfig(tmp_path, **options), items=[item])


def test_the_slow_tier_under_collect_only_submits_nothing(tmp_path, monkeypatch):
    import conftest

    submitted = []
    monkeypatch.setattr(ray_backend, "import_ray", lambda: None)
    monkeypatch.setattr(ray_backend, "check_address", lambda address: None)
    monkeypatch.setattr(ray_backend, "submit", lambda tasks, *a, **k: submitted.append(tasks) or {})
    listing = slow_tier_session(tmp_path, collectonly=True)
    conftest.pytest_collection_finish(listing)
    assert submitted == [] and not hasattr(listing.config, "ray_runs")
    assert listing.config.said == []
    session = slow_tier_session(tmp_path)
    conftest.pytest_collection_finish(session)  # the same session run for real submits its run, and says so first
    assert [[(t.step.name, t.seeds) for t in tasks] for tasks in submitted] == [[("1-basic", [0])]]
    assert len(session.config.said) == 1 and session.config.said[0].startswith("slow tier: 1 run: about ")
    assert "of training in all, spread over the CPUs Ray has" in session.config.said[0]


def test_the_slow_tier_refuses_a_bad_address_in_one_line_before_submitting(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import conftest

    monkeypatch.setattr(ray_backend, "submit", lambda *a, **k: pytest.fail("submitted"))
    with pytest.raises(pytest.UsageError, match=r"^--address: malformed address 'garbage': use 'auto'"):
        conftest.pytest_collection_finish(slow_tier_session(tmp_path, collectonly=True, **{"--address": "garbage"}))
    port = free_port()
    with pytest.raises(pytest.UsageError, match=rf"^--address 127.0.0.1:{port}: nothing answers at 127.0.0.1 port"):
        conftest.pytest_collection_finish(slow_tier_session(tmp_path, **{"--address": f"127.0.0.1:{port}"}))


def test_backend_ray_without_ray_exits_2_with_the_install_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--backend", "ray", "--quick", "--steps", "1-basic", "--seeds", "0", "--runs", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_run_writes_fresh_runs_to_build_runs_by_default(mnist, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--quick", "--steps", "1-basic", "--seeds", "0", "--data-dir", str(data_dir), "--jobs", "1",
                 "--no-report"]) == 0
    assert capsys.readouterr().err.startswith("1 run: about 1 s of wall time, estimated from the committed records'")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.json")) == ["build/runs/1-basic/seed-0.json"]



def test_a_batch_says_up_front_how_long_it_will_take(capsys):
    """From the records' seconds per epoch of each task's step (a variant's: its step's), scaled to the task's
    images and epochs, the tasks dealt longest first to the least loaded of the processes."""
    step, other = get_step("12-wide-end"), get_step("1-basic")
    measured = {step.name: (10.0, 70_000, "Some CPU"), other.name: (5.0, 70_000, "Some CPU")}
    full = lambda s, seed: Task(s, [seed], "cpu", None, None, 0, None, {}, Path("x"))
    # 12-wide-end: 15 epochs of 10 s = 150 s a seed; 1-basic 75 s: on two processes 150 + 75 and 150 + 75
    tasks = [full(step, 0), full(step, 1), full(other, 0), full(other, 1)]
    assert runner.estimate(tasks, 2, measured).startswith("about 4 min of wall time, estimated from the committed "
                                                          "records' seconds per epoch (Some CPU)")
    assert runner.estimate(tasks, 1, measured).startswith("about 8 min")
    quick = Task(step, [0], "cpu", 1, None, 0, None, {"limit_train": 2048, "limit_test": 1000}, Path("x"))
    assert runner.estimate([quick], 2, measured).startswith("about 1 s")  # 10 s x 3,048 / 70,000 images, rounded up
    variant = Task(replace(step, name=step.name + "[lr=0.1]"), [0], "cpu", None, None, 0, None, {}, Path("x"))
    assert runner.estimate([variant], 2, measured).startswith("about 2 min")  # 150 s, as its step
    unknown = full(get_step("3-gap"), 0)
    assert runner.estimate([variant, unknown], 2, measured).endswith("; no estimate for 3-gap")
    assert runner.estimate([unknown], 2, measured) == "no estimate of the time (no committed CPU records of these steps)"
    assert "of training in all, spread over the CPUs Ray has" in runner.estimate(tasks, 0, measured)  # 450 s
    # a step evaluated on another's training adds what its own epochs took beyond that step's: (10 + 5) s x 15
    with_views = Task(step, [0], "cpu", None, None, 0, None, {}, Path("x"), 0, (get_step("18-shifted-views"),))
    assert runner.estimate([with_views], 2, measured | {"18-shifted-views": (15.0, 70_000, "Some CPU")}).startswith(
        "about 4 min")
    # today's engine generation's seconds where a step has records of it: an older engine ran at another speed
    made = lambda generation, seconds: {"provenance": {"generation": generation, "train_images": 60_000, "eval_images": 10_000,
                                                       "device_name": "Some CPU"}, "history": [{"seconds": seconds}]}
    assert runner.seconds_per_epoch({"s": [made(records.GENERATION - 1, 30.0), made(records.GENERATION, 10.0)]}) == {
        "s": (10.0, 70_000, "Some CPU")}
    assert runner.seconds_per_epoch({"s": [made(records.GENERATION - 1, 30.0)]})["s"][0] == 30.0  # none of today's
    # the committed study's records give every registered step its estimate
    committed = runner.seconds_per_epoch(records.load_all(records.PACKAGE.parent / records.DEFAULT_RUNS))
    assert set(STEPS) <= set(committed)
    everything = [full(s, seed) for s in STEPS.values() for seed in s.seeds]
    assert runner.estimate(everything, 2, committed).startswith("about ") and "no estimate" not in runner.estimate(
        everything, 2, committed)



def test_a_step_that_only_evaluates_differently_rides_on_its_parents_training():
    from ablation.study.registry import with_overrides

    twelve, eighteen, thirteen, nineteen = (get_step(n) for n in ("12-wide-end", "18-shifted-views", "13-wide-end-6k",
                                                                 "19-views-6k"))
    units = runner.training_units([(eighteen, [0, 1, 2]), (twelve, [0, 1]), (thirteen, [4]), (nineteen, [4])])
    assert [(u.name, seeds, tuple(v.name for v in views)) for u, seeds, views in units] == [
        ("18-shifted-views", [2], ()),  # step 12's seed 2 is not to be trained (kept by --resume, say): alone
        ("12-wide-end", [0, 1], ("18-shifted-views",)),
        ("13-wide-end-6k", [4], ("19-views-6k",))]
    # without its parent in the batch, or when it trains differently, a step trains on its own
    assert [u.name for u, _, views in runner.training_units([(eighteen, [0]), (thirteen, [0])]) if not views] == [
        "18-shifted-views", "13-wide-end-6k"]
    assert all(not views for _, _, views in runner.training_units([(twelve, [0]), (get_step("14-padded-8k"), [0])]))
    # variants made with --set keep their step's parent; a rider of a rider rides on the first
    variant = [with_overrides(s, ["lr=0.1"]) for s in (twelve, eighteen)]
    assert [(u.name, tuple(v.name for v in views)) for u, _, views in runner.training_units([(v, [0]) for v in variant])] \
        == [("12-wide-end[lr=0.1]", ("18-shifted-views[lr=0.1]",))]
    views_of_18 = replace(eighteen, name="18b", parent="18-shifted-views", tta_rotations=(5.0,))
    (unit,) = runner.training_units([(twelve, [0]), (eighteen, [0]), (views_of_18, [0])])
    assert unit[0] is twelve and [v.name for v in unit[2]] == ["18-shifted-views", "18b"]
    task = Task(twelve, [0, 1], "cpu", None, None, 0, None, {}, Path("x"), 0, (eighteen,))
    assert task.runs == 4 and task.describe() == "12-wide-end seeds 0,1 (and 18-shifted-views on its training)"

# `python -m ablation` in which every run but seed 0's waits until its worker is stopped, so that a Ctrl-C after the
# first finished run always finds runs in progress and queued, on a machine of any speed (seed 0 is always the first
# written). The pool's spawned workers run this file's top level as well (as __mp_main__), so the wait is theirs.
WAITING_DRIVER = """
import sys
import threading

from ablation.runs import runner

train_task = runner.train_task


def seed_0_trains_the_others_wait(task, *args, **kwargs):
    if task.seeds != [0]:
        threading.Event().wait()  # until the pool terminates this worker
    return train_task(task, *args, **kwargs)


runner.train_task = seed_0_trains_the_others_wait
if __name__ == "__main__":
    from ablation.cli import main

    sys.exit(main())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to a process group")
def test_ctrl_c_stops_the_process_pool_keeps_what_was_written_and_names_what_was_lost(data_dir, tmp_path):
    out, driver = tmp_path / "runs", tmp_path / "waiting_driver.py"
    driver.write_text(WAITING_DRIVER)
    argv = [sys.executable, str(driver), "run", "--quick", "--steps", "1-basic", "--seeds", "0-7", "--jobs", "2",
            "--data-dir", str(data_dir), "--runs", str(out), "--no-report"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=Path(__file__).resolve().parents[1])
    lines = []
    for line in proc.stderr:  # wait for the first finished run, then press Ctrl-C (the whole process group)
        lines.append(line)
        if line.startswith("[1/8]"):
            os.killpg(proc.pid, signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=60)  # it stops: the queued runs are dropped, the running ones terminated
    err = "".join(lines) + (rest or "")
    assert proc.returncode == 130, err
    lost = "; ".join(f"1-basic seed {seed}" for seed in range(1, 8))
    assert f"interrupted: 1 record(s) written and kept; not written (queued or in progress): {lost}\n" in err, err
    written = sorted(out.glob("*/seed-*.json"))
    assert [p.name for p in written] == ["seed-0.json"]
    time.sleep(2)  # no orphaned worker goes on writing
    assert sorted(out.glob("*/seed-*.json")) == written
    assert not list(out.glob("*/.*.tmp"))


@ON_RAY
def test_ctrl_c_under_ray_cancels_every_unfinished_task_keeps_what_was_written_and_names_what_was_lost(
        ray_local, mnist, tmp_path, monkeypatch, capsys):
    """A Ctrl-C lands while the driver waits on Ray (here: raised as the first record is written, where the real
    signal would be taken, inside run_on_ray's wait loop). A real SIGINT to `run --backend ray` was checked by hand:
    exit 130, one record, no Ray process left."""
    finished, cancelled = runner.Tracker.finished, []

    def interrupt_after_the_first(tracker, *args, **kwargs):
        finished(tracker, *args, **kwargs)
        raise KeyboardInterrupt

    cancel = ray_local.cancel
    monkeypatch.setattr(runner.Tracker, "finished", interrupt_after_the_first)
    monkeypatch.setattr(ray_local, "cancel", lambda ref, **kw: cancelled.append(ref) or cancel(ref, **kw))
    tasks = quick_tasks(tmp_path, [("1-basic", seed) for seed in range(8)])
    with pytest.raises(KeyboardInterrupt):
        ray_backend.run_tasks(tasks, mnist)
    written = sorted(p.name for p in (tmp_path / "1-basic").glob("seed-*.json"))
    assert len(written) == 1 and len(cancelled) == 7, (written, len(cancelled))
    err = capsys.readouterr().err
    lost = err.split("interrupted: 1 record(s) written and kept; not written (queued or in progress): ")[1].split("\n")[0]
    kept = int(written[0].removeprefix("seed-").removesuffix(".json"))
    assert lost.split("; ") == [f"1-basic seed {seed}" for seed in range(8) if seed != kept]

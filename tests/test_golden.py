"""Golden runs: what every registered step computes, pinned on a run of seconds, on any machine.

Each step trains seed 0 for its full number of epochs, with its schedule, augmentation, weight average,
test-time views and batch size, on the first TRAIN_IMAGES training images (a partial last batch at every
batch size the registry uses) and is evaluated on the first TEST_IMAGES test images, on the CPU with one
thread (the goldens say nothing about CUDA). tests/golden/<step>.json holds the history (every float as
it came) and a SHA-256 digest of the final weights, once for each set-up it was recorded on.

A set-up is what decides how the floats round, besides the code (`setup()`): torch's version, the CPU
model, the vector instructions ATen dispatches to and those oneDNN's convolutions use (lowered by
ONEDNN_MAX_CPU_ISA=AVX2 or SSE41, as on an older CPU). Another set-up sums in another order: the histories
agree bit for bit for an epoch or two, then part in the seventh digit and drift apart.

- On a set-up the golden was recorded on, the run must equal it bit for bit.
- On any other, it must agree within TOLERANCE: the learning rate of every epoch exactly (pure Python), the
  losses of the first two epochs within a relative bound, their accuracies within one image. The bound was
  measured, not guessed, on every golden with oneDNN capped at AVX2 and at SSE4.1 on the AMD EPYC (AVX-512)
  that recorded them: rounding moved epoch 1's training loss by at most 3e-7 and its test loss by 2e-5, and
  epoch 2's by 7e-4 and 1e-2 (the chaotic 2-bn-dropout; any other by 2e-6 and 3e-4), and flipped no image;
  the two one-line changes kept as tests here (rotation angle x 0.9; a one-cycle warm-up one iteration
  longer) move epoch 1's training loss by 4e-5 or more, or a learning rate. From epoch 3 rounding alone
  moves the losses by up to 40 %: a change of code that acts only there (a learning rate changed in the last
  epochs only, say) is caught on the set-ups recorded, bit for bit, and not on others (`python tests/test_golden.py
  [rotation|warmup]` measures it again, on this machine's float path). So on another set-up a golden run
  trains only the compared epochs (the schedule is still the step's: those epochs come out bit for bit as in
  the full run, checked on every golden).

The goldens define the engine's numeric generation (records.GENERATION): each was accepted under one,
and a record is current while it was made under today's. A change that moves no number needs nothing.
A change that moves numbers must bump records.GENERATION, then re-accept every golden:

    ABLATION_ACCEPT_GOLDEN=1 python -m pytest -m fast tests/test_golden.py -n 0

Accepting refuses to overwrite a golden whose numbers moved on a set-up it was recorded on under the
generation it was accepted in, so the bump cannot be forgotten; the bump makes every older record stale
(records.not_current_because), and `python -m ablation run --resume` retrains them; a bumped golden keeps
only the set-up that accepted it. On a set-up not yet recorded, the same command adds it (no bump: the run
must first agree within TOLERANCE). ABLATION_GOLDEN_CROSS=1 compares with the other set-ups' goldens only,
by tolerance: CI runs the goldens so under a oneDNN cap, so that the cross-set-up check runs on every landing.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ablation.runs import machine, records
from ablation.engine.data import MNIST
from ablation.study.registry import STEPS
from ablation.study.survival import setup_words
from ablation.engine.train import train_many

pytestmark = pytest.mark.fast

GOLDEN_DIR = Path(__file__).parent / "golden"
ACCEPT_VAR = "ABLATION_ACCEPT_GOLDEN"
ACCEPT_COMMAND = f"{ACCEPT_VAR}=1 python -m pytest -m fast tests/test_golden.py -n 0"
CROSS_VAR = "ABLATION_GOLDEN_CROSS"
# 136 = 128 + 8 = 2 x 64 + 8 = 4 x 32 + 8: at every batch size in the registry an epoch is two or more
# updates, the last one on a partial batch; 64 test images go through every test-time view.
TRAIN_IMAGES = 136
TEST_IMAGES = 64
SEED = 0
THREADS = 1
CASES = [pytest.param(step.name, step, id=step.name) for step in STEPS.values()]


def weights_digest(state_dict: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def golden_run(step, mnist, epochs: int | None = None) -> dict:
    """The numbers a short run of `step` computes: its golden, without the generation it was accepted in. With
    `epochs`, only the first epochs of it (the schedule is still the step's: the same numbers as far as they go)."""
    data = MNIST(mnist.train_images[:TRAIN_IMAGES], mnist.train_labels[:TRAIN_IMAGES],
                 mnist.test_images[:TEST_IMAGES], mnist.test_labels[:TEST_IMAGES])
    result = train_many(step, [SEED], device="cpu", threads=THREADS, data=data, epochs=epochs)[0]
    return {"step": step.name, "seed": SEED, "train_images": TRAIN_IMAGES, "test_images": TEST_IMAGES,
            "threads": THREADS, "device": "cpu", "params": result.params, "diverged_at": result.diverged_at,
            "history": records.without_timings(result.history), "weights_sha256": weights_digest(result.state_dict)}


def setup() -> dict:
    """The set-up this process computes goldens on: what, besides the code, decides how its floats round."""
    path = machine.float_path()
    return {"torch": torch.__version__, "cpu": machine.device_name("cpu"), "cpu_capability": path["cpu_capability"],
            "onednn_isa": path["onednn_isa"]}


def setup_text(s: dict) -> str:
    return setup_words({"device": "cpu", "device_name": s["cpu"], **s})


# Relative bound on each loss, epoch by epoch, on another set-up; later epochs are not compared there. Measured
# (docstring): the most rounding moved them, epoch 1: train 3e-7, test 2e-5; epoch 2: train 7e-4, test 1e-2
# (2-bn-dropout under SSE4.1; any other golden 2e-6 and 3e-4). The rotation change moved epoch 1's training
# loss by 4e-5 to 1e-3 in every golden that rotates (its test loss sometimes not at all).
TOLERANCE = ({"train_loss": 1e-6, "test_loss": 2e-4}, {"train_loss": 1e-2, "test_loss": 1e-1})
ACCURACIES = {"train_acc": 100 / TRAIN_IMAGES, "test_acc": 100 / TEST_IMAGES}  # one image, in percent


def moved(golden: dict, fresh: dict) -> list[str]:
    """What differs between a golden and a fresh run on its set-up, in words (the first few differences)."""
    out = [f"{key}: golden {golden.get(key)!r}, now {fresh[key]!r}"
           for key in fresh if key != "history" and golden.get(key) != fresh[key]]
    old, new = golden.get("history", []), fresh["history"]
    if len(old) != len(new):
        out.append(f"history: {len(old)} epochs in the golden, {len(new)} now")
    for a, b in zip(old, new):
        out += [f"epoch {b['epoch']} {k}: golden {a.get(k)!r}, now {b[k]!r}" for k in b if a.get(k) != b[k]]
    return out[:6] + ([f"... and {len(out) - 6} more"] if len(out) > 6 else [])


def relative_gap(x: float, y: float) -> float:
    return abs(x - y) / max(abs(x), abs(y), 1e-12)


def beyond_tolerance(golden: dict, fresh: dict) -> list[str]:
    """What differs between a golden recorded on another set-up and a fresh run by more than rounding can
    move it (TOLERANCE), in words; empty when the run agrees within it."""
    out = [f"{key}: golden {golden.get(key)!r}, now {fresh[key]!r}" for key in ("params",) if golden.get(key) != fresh[key]]
    old, new = golden.get("history", []), fresh["history"]
    if not min(len(old), len(TOLERANCE)) <= len(new) <= len(old):  # a run of the compared epochs is enough
        out.append(f"history: {len(old)} epochs in the golden, {len(new)} now")
    for a, b in zip(old, new):
        out += [f"epoch {b['epoch']} {k}: golden {a.get(k)!r}, now {b[k]!r}" for k in ("epoch", "lr") if a.get(k) != b[k]]
    for a, b, bounds in zip(old, new, TOLERANCE):
        for k, bound in bounds.items():
            x, y = a[k], b[k]
            if not (math.isfinite(x) and math.isfinite(y)):
                if not (x == y or math.isnan(x) and math.isnan(y)):
                    out.append(f"epoch {b['epoch']} {k}: golden {x!r}, now {y!r}")
            elif (gap := relative_gap(x, y)) > bound:
                out.append(f"epoch {b['epoch']} {k}: golden {x!r}, now {y!r} (relative {gap:.1e} > {bound:.0e})")
        out += [f"epoch {b['epoch']} {k}: golden {a[k]!r}, now {b[k]!r} (more than one image)"
                for k, image in ACCURACIES.items() if not abs(a[k] - b[k]) <= image * 1.001]
    return out[:6] + ([f"... and {len(out) - 6} more"] if len(out) > 6 else [])


def recorded(golden: dict) -> list[dict]:
    """The golden's entries, one per set-up it was recorded on."""
    return golden.get("setups", [])


def write_golden(path: Path, fresh: dict, entries: list[dict]) -> None:
    """`fresh`'s shared fields (step, images, params, ...) and one entry per set-up, each its history and weights."""
    shared = {k: v for k, v in fresh.items() if k not in ENTRY_KEYS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"generation": records.GENERATION, **shared, "setups": entries}, indent=1) + "\n")


# What differs from set-up to set-up; the rest of a golden is the step's, the same on any.
ENTRY_KEYS = ("diverged_at", "history", "weights_sha256")


def entry(fresh: dict, here: dict) -> dict:
    return {"setup": here, **{k: fresh[k] for k in ENTRY_KEYS}}


def as_run(golden: dict, recorded_entry: dict) -> dict:
    """A golden's entry as the run it records (the shared fields and that set-up's numbers)."""
    return {**{k: v for k, v in golden.items() if k not in ("setups", "generation")},
            **{k: v for k, v in recorded_entry.items() if k != "setup"}}


def accept(path: Path, name: str, golden: dict | None, fresh: dict, here: dict) -> None:
    """ABLATION_ACCEPT_GOLDEN=1: record this set-up's numbers, refusing what only a generation bump may change."""
    if golden is None or golden.get("generation") != records.GENERATION:
        return write_golden(path, fresh, [entry(fresh, here)])  # new, or bumped: older set-ups' numbers are gone
    entries = recorded(golden)
    mine = [e for e in entries if e["setup"] == here]
    if mine:
        if changes := moved(as_run(golden, mine[0]), fresh):
            pytest.fail(f"{name}: numbers moved on {setup_text(here)}, a set-up this golden was recorded on, under "
                        f"generation {records.GENERATION}, the one it was accepted in; bump records.GENERATION first "
                        f"(older records then become stale), then accept again:\n  " + "\n  ".join(changes))
        return
    for other in entries:
        if changes := beyond_tolerance(as_run(golden, other), fresh):
            pytest.fail(f"{name}: on {setup_text(here)}, outside the tolerance of the golden recorded on "
                        f"{setup_text(other['setup'])}, so not added: a change of code needs a bump of "
                        f"records.GENERATION first:\n  " + "\n  ".join(changes))
    write_golden(path, fresh, entries + [entry(fresh, here)])


@pytest.mark.parametrize("name, step", CASES)
def test_golden_run(name, step, mnist):
    """The step's short run computes exactly its golden's numbers on a set-up the golden was recorded on, and
    agrees within TOLERANCE with every recorded set-up's elsewhere; accepted under today's records.GENERATION."""
    path, here = GOLDEN_DIR / f"{name}.json", setup()
    golden = json.loads(path.read_text()) if path.exists() else None
    if os.environ.get(ACCEPT_VAR) == "1":
        return accept(path, name, golden, golden_run(step, mnist), here)
    if golden is None:
        pytest.fail(f"{step.name}: no golden at {path}; to accept what this engine computes, run\n    {ACCEPT_COMMAND}")
    if golden.get("generation") != records.GENERATION:
        pytest.fail(f"{step.name}: golden accepted under generation {golden.get('generation')}, the engine is at "
                    f"{records.GENERATION}; run\n    {ACCEPT_COMMAND}")
    cross = os.environ.get(CROSS_VAR) == "1"
    mine = [e for e in recorded(golden) if e["setup"] == here]
    if mine and not cross:
        fresh = golden_run(step, mnist)
        if changes := moved(as_run(golden, mine[0]), fresh):
            pytest.fail(f"{step.name}: numbers moved on the set-up it was recorded on ({setup_text(here)}; "
                        f"{path.name}):\n  " + "\n  ".join(changes) +
                        f"\nA change of code. If intended: bump records.GENERATION, then run\n    {ACCEPT_COMMAND}")
        return
    others = [e for e in recorded(golden) if e["setup"] != here]
    if not others:  # e.g. a CPU where the oneDNN cap changes nothing, whose own goldens were accepted
        pytest.skip(f"{CROSS_VAR}=1: {path.name} was recorded on this set-up only ({setup_text(here)})")
    fresh = golden_run(step, mnist, epochs=len(TOLERANCE))  # all that is compared on another set-up
    for other in others:
        if changes := beyond_tolerance(as_run(golden, other), fresh):
            pytest.fail(f"{step.name}: outside the tolerance (learning rates exact; relative, the losses of epochs "
                        f"1-{len(TOLERANCE)}: {TOLERANCE}; their accuracies within one image) of the golden recorded on another "
                        f"set-up ({setup_text(other['setup'])}; here: {setup_text(here)}; {path.name}):\n  "
                        + "\n  ".join(changes) + "\nMore than rounding moves: a change of code. If intended: bump "
                        f"records.GENERATION, then run\n    {ACCEPT_COMMAND}")
    # Within tolerance: this set-up may be recorded too (then compared bit for bit here): ACCEPT_COMMAND.


def rotation_times_0_9(monkeypatch) -> None:
    module, sample = sys.modules["ablation.engine.augment"], sys.modules["ablation.engine.augment"].sample_params

    def sample_params(n, cfg, generator, device):
        params = sample(n, cfg, generator, device)
        params[:, 0] *= 0.9
        return params
    monkeypatch.setattr(module, "sample_params", sample_params)


def warmup_one_iteration_longer(monkeypatch) -> None:
    module, rate = sys.modules["ablation.engine.train"], sys.modules["ablation.engine.train"].learning_rate

    def learning_rate(step, iteration, iters_per_epoch):
        s = step.schedule
        if s.kind != "onecycle":
            return rate(step, iteration, iters_per_epoch)
        total = (s.final_epoch or step.epochs) * iters_per_epoch
        rise = max(1, round(s.warmup * total)) + 1
        start, floor = step.lr / s.div, step.lr / s.final_div
        if iteration < rise:
            return start + (step.lr - start) * iteration / rise
        return max(floor, step.lr + (floor - step.lr) * (iteration - rise) / max(1, total - rise))
    monkeypatch.setattr(module, "learning_rate", learning_rate)


@pytest.mark.parametrize("change", [rotation_times_0_9, warmup_one_iteration_longer], ids=lambda f: f.__name__)
def test_a_one_line_change_of_code_is_beyond_tolerance_of_every_recorded_set_up(change, monkeypatch, mnist):
    """The cross-set-up check is not blind: each of the two one-line changes the tolerance was measured against,
    run here (whatever this set-up is), falls outside TOLERANCE of every set-up 7-onecycle's golden holds."""
    name = "7-onecycle"
    golden = json.loads((GOLDEN_DIR / f"{name}.json").read_text())
    change(monkeypatch)
    fresh = golden_run(STEPS[name], mnist, epochs=len(TOLERANCE))
    for other in recorded(golden):
        assert beyond_tolerance(as_run(golden, other), fresh), f"{change.__name__} passed as rounding"


def test_the_tolerance_takes_rounding_and_refuses_a_change():
    """beyond_tolerance on made-up histories: what rounding moves passes; a learning rate, a moved first epoch,
    a second image flipped or a loss turned NaN each fail, named."""
    row = lambda epoch, loss, acc=50.0, lr=0.1: {"epoch": epoch, "train_loss": loss, "train_acc": 50.0,
                                                 "test_loss": loss, "test_acc": acc, "lr": lr}
    golden = {"params": 10, "history": [row(1, 2.0), row(2, 1.5), row(3, 1.0), row(4, 0.5)]}
    run = lambda *rows, params=10: {"params": params, "history": list(rows)}
    assert beyond_tolerance(golden, run(row(1, 2.0 * (1 + 5e-7)), row(2, 1.5 * (1 + 5e-3)), row(3, 1.3), row(4, 0.9))) == []
    assert beyond_tolerance(golden, run(row(1, 2.0, acc=50.0 + 100 / TEST_IMAGES), *golden["history"][1:])) == []
    refused = {
        "epoch 1 lr": run(row(1, 2.0, lr=0.2), *golden["history"][1:]),
        "epoch 1 train_loss": run(row(1, 2.0 * (1 + 1e-5)), *golden["history"][1:]),
        "epoch 2 test_acc": run(golden["history"][0], row(2, 1.5, acc=50.0 + 2 * 100 / TEST_IMAGES),
                                *golden["history"][2:]),
        "epoch 2 test_loss": run(golden["history"][0], row(2, float("nan")), *golden["history"][2:]),
        "params": run(*golden["history"], params=11),
        "history: 4 epochs in the golden, 1 now": run(*golden["history"][:1]),
        "history: 4 epochs in the golden, 5 now": run(*golden["history"], row(5, 0.4)),
    }
    assert beyond_tolerance(golden, run(*golden["history"][:2])) == []  # the compared epochs are enough
    for what, fresh in refused.items():
        assert any(line.startswith(what) for line in beyond_tolerance(golden, fresh)), what


def test_accepting_adds_a_set_up_without_a_bump_and_refuses_what_only_a_bump_may_change(tmp_path, monkeypatch):
    """accept() on made-up runs: a first golden is written; a set-up within tolerance is added beside the recorded
    one; one beyond it, or a recorded set-up whose numbers moved, is refused under the same generation; after a
    bump the golden keeps only the set-up that accepted it."""
    row = lambda epoch, loss: {"epoch": epoch, "train_loss": loss, "train_acc": 50.0, "test_loss": loss,
                               "test_acc": 50.0, "lr": 0.1}
    run = lambda loss, digest="a": {"step": "s", "params": 10, "diverged_at": None, "weights_sha256": digest,
                                    "history": [row(1, loss), row(2, 1.0)]}
    amd, avx2, sse = ({"torch": "2.14.1", "cpu": "AMD EPYC", "cpu_capability": "AVX512", "onednn_isa": isa}
                      for isa in ("Intel AVX-512", "Intel AVX2", "Intel SSE4.1"))
    path = tmp_path / "s.json"
    read = lambda: json.loads(path.read_text())
    accept(path, "s", None, run(2.0), amd)
    assert [e["setup"] for e in recorded(read())] == [amd] and read()["generation"] == records.GENERATION
    accept(path, "s", read(), run(2.0 * (1 + 1e-7), "b"), avx2)  # rounding: added, no bump
    assert [e["setup"] for e in recorded(read())] == [amd, avx2]
    assert recorded(read())[1]["weights_sha256"] == "b" and recorded(read())[0]["weights_sha256"] == "a"
    with pytest.raises(pytest.fail.Exception, match="outside the tolerance"):
        accept(path, "s", read(), run(2.01, "c"), sse)
    with pytest.raises(pytest.fail.Exception, match="bump records.GENERATION first"):
        accept(path, "s", read(), run(2.0, "moved"), amd)
    assert len(recorded(read())) == 2
    monkeypatch.setattr(records, "GENERATION", records.GENERATION + 1)
    accept(path, "s", read(), run(2.5, "d"), sse)
    assert [e["setup"] for e in recorded(read())] == [sse] and read()["generation"] == records.GENERATION


# The second float path the fast tier checks the goldens on, in a fresh interpreter (oneDNN reads its cap when
# it starts): no golden is recorded for it, and ABLATION_GOLDEN_CROSS=1 keeps it compared by tolerance if one is.
SECOND_FLOAT_PATH = {"ONEDNN_MAX_CPU_ISA": "AVX2", CROSS_VAR: "1"}


def test_the_goldens_hold_on_a_second_float_path_and_the_one_line_changes_still_fail_there(data_dir):
    """What a user on another CPU runs: every golden, and the two one-line changes, with oneDNN capped at AVX2,
    each compared by tolerance with the set-ups the goldens were recorded on. So a golden that holds only on
    the machine that wrote it cannot land."""
    if os.environ.get(CROSS_VAR) == "1":
        pytest.skip("this process is the second float path already")
    env = {k: v for k, v in os.environ.items() if k not in (ACCEPT_VAR, "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS")}
    env.update(SECOND_FLOAT_PATH, ABLATION_DATA=str(data_dir))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-m", "fast",
                           __file__, "-k", "test_golden_run or one_line_change"], env=env, cwd=Path(__file__).parent.parent,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    if f"{len(CASES)} skipped" in proc.stdout:
        pytest.skip("the goldens were recorded on the set-up the cap gives here only: no other to compare with")
    assert f"{len(CASES) + 2} passed" in proc.stdout, proc.stdout[-2000:]


def test_every_golden_belongs_to_a_registered_step():
    """A golden left behind by a renamed or removed step is an error, not a silent extra file."""
    names = {p.stem for p in GOLDEN_DIR.glob("*.json")}
    assert names <= set(STEPS), f"goldens without a step: {sorted(names - set(STEPS))}"


def measure(change: str = "") -> None:
    """How far this float path (and, with `change`, one of the one-line changes) moves every golden's losses from
    the set-ups recorded, epoch by epoch: how TOLERANCE was measured. `python tests/test_golden.py [rotation|warmup]`
    with $ABLATION_DATA set, under ONEDNN_MAX_CPU_ISA=AVX2 or SSE41 for another float path."""
    from ablation.engine.data import load_mnist

    torch.set_num_threads(THREADS)
    patch = pytest.MonkeyPatch()
    if change:
        {"rotation": rotation_times_0_9, "warmup": warmup_one_iteration_longer}[change](patch)
    mnist, worst, beyond = load_mnist(), {}, []
    for case in CASES:
        name, step = case.values
        golden = json.loads((GOLDEN_DIR / f"{name}.json").read_text())
        fresh = golden_run(step, mnist)
        for other in recorded(golden):
            if beyond_tolerance(as_run(golden, other), fresh):
                beyond.append(name)
            for a, b in zip(other["history"], fresh["history"]):
                for k in ("train_loss", "test_loss"):
                    worst[(b["epoch"], k)] = max(worst.get((b["epoch"], k), 0.0), relative_gap(a[k], b[k]))
    patch.undo()
    print(f"{setup_text(setup())}{f', with {change}' if change else ''}: beyond the tolerance: {len(set(beyond))} of "
          f"{len(CASES)} goldens {sorted(set(beyond))}")
    for epoch in range(1, 6):
        print(f"  epoch {epoch}: largest relative move, " + ", ".join(f"{k} {worst.get((epoch, k), 0):.0e}"
                                                                    for k in ("train_loss", "test_loss")))


if __name__ == "__main__":
    measure(*sys.argv[1:2])

"""The Ray backend: each Task a Ray task, on a local Ray or any cluster (`--backend ray [--address ADDR]`).

Nothing is assumed shared between the machines but the installed package: MNIST travels once through
Ray's object store (its four uint8 arrays), each task trains in its worker and returns its records and
weights as bytes, and the driver writes them (runner.Tracker), as the process pool's driver does. A
worker that dies is retried by Ray (`max_retries`); a task that fails for a reason of its own is named
and the others go on; Ctrl-C cancels every task not yet finished.

Ray is an optional dependency (`pip install -e '.[ray]'`), imported only here and only when asked for.
"""
from __future__ import annotations

import sys

from .data import MNIST
from . import runner
from .runner import Task, Tracker, train_task

INSTALL = "pip install -e '.[ray]'"
DEFAULT_RETRIES = 3  # a worker that dies (killed, out of memory, its node lost) is tried again this often


class RayMissing(ImportError):
    pass


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise RayMissing(f"--backend ray needs Ray, which is not installed here ({e}); install it with: {INSTALL}") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None):
    """Ray, connected: to the cluster at `address` ('auto': the one `ray start` made on this machine), else a
    local Ray started for this process (with `num_cpus` CPUs; default all)."""
    ray = import_ray()
    if not ray.is_initialized():
        options = dict(address=address) if address else dict(num_cpus=num_cpus)
        # The package must import in every worker: on this machine it does (the same interpreter and paths);
        # on a cluster, install it on each node (README, "More machines").
        ray.init(**options, include_dashboard=False, log_to_driver=True, logging_level="WARNING")
    return ray


def _arrays(data: MNIST) -> tuple:
    return tuple(t.cpu().numpy() for t in (data.train_images, data.train_labels, data.test_images, data.test_labels))


def train_remote(task: Task, arrays: tuple) -> tuple[list[tuple[dict, bytes]], str]:
    """What a Ray worker runs: the task trained on the data from the object store; its records and where it ran."""
    import ray
    import torch

    # The object store hands out read-only arrays; a copy gives the engine ordinary tensors, equal to load_mnist's.
    data = MNIST(*(torch.from_numpy(a.copy()) for a in arrays))
    node = ray.get_runtime_context().get_node_id()[:8]
    return train_task(task, data, bar=False), f" on node {node}"


def resources(task: Task, runs_per_gpu: int) -> dict:
    """What one task asks Ray for: one CPU, or a share of a GPU so that `runs_per_gpu` tasks train on each."""
    if task.device.startswith("cuda"):
        return {"num_cpus": 1, "num_gpus": 1 / runs_per_gpu}
    return {"num_cpus": 1}


def submit(tasks: list[Task], data: MNIST | None, *, address: str | None = None, num_cpus: int | None = None,
           runs_per_gpu: int = 1, max_retries: int = DEFAULT_RETRIES) -> dict:
    """Submit every task at once (MNIST put in the object store once); {Ray object ref: task}."""
    from .data import load_mnist

    ray = connect(address, num_cpus)
    data = data or load_mnist(tasks[0].data_dir)
    arrays = ray.put(_arrays(data))
    remote = ray.remote(train_remote)
    refs = {remote.options(max_retries=max_retries, **resources(task, runs_per_gpu)).remote(task, arrays): task
            for task in tasks}
    total = ray.cluster_resources()
    gpus = f", {total['GPU']:g} GPUs" if "GPU" in total else ""
    print(f"submitted {len(refs)} tasks to {f'Ray at {address}' if address else 'a local Ray'} ({total.get('CPU', 0):g} "
          f"CPUs{gpus}); one line per epoch from the workers", file=sys.stderr, flush=True)
    return refs


def result(ref, max_retries: int = DEFAULT_RETRIES) -> tuple[list[tuple[dict, bytes]], str]:
    """A submitted task's (records and weights, where it ran), waiting for it; its failure as an exception:
    the task's own (e.g. a missing teacher), or a RuntimeError when its worker died more often than allowed."""
    ray = import_ray()
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # raised in the worker: the cause is the task's own exception
        raise (e.cause if isinstance(e.cause, Exception) else RuntimeError(str(e))) from None
    except ray.exceptions.RayError as e:
        raise RuntimeError(f"{type(e).__name__} after {max_retries} retries: {str(e).splitlines()[0]}") from None


def run_wave(wave: list[Task], tracker: Tracker, data: MNIST | None, *, max_retries: int = DEFAULT_RETRIES,
             **options) -> None:
    """Submit every task of the wave, then write each one's records as it finishes (runner.Tracker)."""
    refs = submit(wave, data, max_retries=max_retries, **options)
    ray = import_ray()
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            task = refs[done[0]]
            try:
                encoded, node = result(done[0], max_retries)
            except Exception as e:  # noqa: BLE001 - the task is named; the others go on
                tracker.failed(task, e)
                continue
            tracker.finished(task, encoded, where=node)
    except BaseException:
        for ref in pending:  # Ctrl-C: nothing more trains; what has been written stays
            ray.cancel(ref, force=True)
        raise


def run_tasks(tasks: list[Task], data: MNIST | None = None, **options) -> list[str]:
    """runner.run_tasks with every wave on Ray (`options`: run_wave's keywords); the failed tasks' errors."""
    from functools import partial

    from .data import load_mnist

    if tasks and data is None:  # read once for every wave (distillation's come in two)
        data = load_mnist(tasks[0].data_dir)
    return runner.run_tasks(tasks, 0, data, run_wave=partial(run_wave, **options))

"""The Ray backend: each Task a Ray task, on a local Ray or any cluster (`--backend ray [--address ADDR]`).

Nothing is assumed shared between the machines but the installed package: MNIST travels once through
Ray's object store (its four uint8 arrays), each task trains in its worker and returns its records and
weights as bytes, and the driver writes them (runner.Tracker), as the process pool's driver does. A
worker that dies is retried by Ray (`max_retries`); a task that fails for a reason of its own is named
and the others go on; Ctrl-C cancels every task not yet finished.

Ray is an optional dependency (`pip install -e '.[ray]'`), imported only here and only when asked for.
"""
from __future__ import annotations

import socket
import sys

from ..engine.data import MNIST
from . import runner
from .runner import Task, Tracker, train_task

INSTALL = "pip install -e '.[ray]'"
DEFAULT_RETRIES = 3  # a worker that dies (killed, out of memory, its node lost) is tried again this often
MAX_RETRIES = 100  # more is a typo; Ray reads -1 as "forever", which --max-retries does not offer
ADDRESS_FORMS = "'auto' (the Ray that `ray start` made on this machine) or HOST:PORT of a Ray head, e.g. 10.0.0.5:6379"
PROBE_SECONDS = 3  # how long the head's port has to answer a TCP connect
AUTH_HINT = ("Ray's token authentication is on there: on this machine set RAY_AUTH_MODE=token and give it the head's "
             "token (copy the head's ~/.ray/auth_token here, or set RAY_AUTH_TOKEN) (README, \"More machines\")")


class RayMissing(ImportError):
    pass


class RayUnreachable(ConnectionError):
    """The cluster named by --address cannot be used from here; the message says why in one line."""


def parse_address(text: str) -> str:
    """--address as given, if it is 'auto' or HOST:PORT (an IPv6 host in brackets); else a ValueError naming the forms.
    Nothing is contacted (check_address does that)."""
    text = text.strip()
    host, colon, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if text == "auto" or (colon and host and port.isascii() and port.isdigit() and 0 < int(port) < 65536
                          and not any(c.isspace() or c in "/[]@" for c in host)):
        return text
    raise ValueError(f"malformed address {text!r}: use {ADDRESS_FORMS}")


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _probe(address: str) -> None:
    """A TCP connect to the head's port: one line within seconds when nothing answers, where Ray retries for
    20 s and ends in a long traceback."""
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except socket.gaierror as e:
        raise RayUnreachable(f"--address {address}: no such host {host!r} ({e.strerror})") from None
    except OSError as e:
        why = f"no answer in {PROBE_SECONDS} s" if isinstance(e, TimeoutError) else e.strerror or type(e).__name__
        raise RayUnreachable(f"--address {address}: nothing answers at {host} port {port} ({why.lower()}): is the "
                             f"Ray head started there (`ray start --head --port {port}`), and is the port open from "
                             f"here?") from None


def _authentication_error(error: BaseException | None) -> str | None:
    """Ray's own words when `error` (or what caused it) is its token authentication refusing us, else None. (Ray
    raises AuthenticationError itself, or a RuntimeError quoting its traceback after 20 s of retries.)"""
    while error is not None:
        words = getattr(error, "message", None) if type(error).__name__ == "AuthenticationError" else None
        if words is None and "InvalidAuthToken" in str(error):
            words = next(line for line in str(error).splitlines() if "InvalidAuthToken" in line)
            words = words.split("AuthenticationError: ")[-1]
        if words:
            return words.split(". Note:")[0].split(". Ensure")[0].strip().rstrip(".")
        error = error.__cause__ or error.__context__
    return None


def check_address(address: str | None) -> None:
    """Connect to the cluster at `address` now, before anything loads, or say in one line why not (RayUnreachable):
    a malformed address, nothing answering at HOST:PORT, no local cluster for 'auto', a token Ray refuses.
    No address: nothing to check (a local Ray starts when the tasks are submitted)."""
    if address is None:
        return
    try:
        address = parse_address(address)
    except ValueError as e:
        raise RayUnreachable(f"--address: {e}") from None
    if address != "auto":
        _probe(address)
    try:
        connect(address)
    except Exception as e:  # noqa: BLE001 - Ray's connection errors come as several types; each is said in one line
        if words := _authentication_error(e):
            raise RayUnreachable(f"--address {address}: {words}. {AUTH_HINT}") from None
        if address == "auto" and "Could not find any running Ray instance" in str(e):
            raise RayUnreachable("--address auto: no Ray cluster runs on this machine (start one with `ray start "
                                 "--head`, or give HOST:PORT of the head)") from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RayUnreachable(f"--address {address}: cannot join the Ray cluster there: {type(e).__name__}: {first}") from None


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


def attempt_number() -> int:
    """Which try of its task this worker runs: 0 the first, 1 after one retry (Ray's core worker knows; 0 where a
    Ray without that call does not say)."""
    import ray

    core_worker = getattr(ray._private.worker.global_worker, "core_worker", None)
    try:
        return int(core_worker.get_current_task_attempt_number())
    except Exception:  # noqa: BLE001 - a Ray without it: no retry is claimed
        return 0


def where_am_i() -> dict:
    """The node a worker runs on: its host name, IP address and Ray node id (two nodes on one machine share the first
    two), and which try of the task this is."""
    import platform

    import ray

    return {"host": platform.node(), "ip": ray.util.get_node_ip_address(),
            "node": ray.get_runtime_context().get_node_id(), "attempt": attempt_number()}


def train_remote(task: Task, arrays: tuple) -> tuple[list[tuple[dict, bytes]], dict]:
    """What a Ray worker runs: the task trained on the data from the object store; its records and where_am_i."""
    import torch

    # The object store hands out read-only arrays; a copy gives the engine ordinary tensors, equal to load_mnist's.
    data = MNIST(*(torch.from_numpy(a.copy()) for a in arrays))
    return train_task(task, data, bar=False), where_am_i()


def resources(task: Task, runs_per_gpu: int) -> dict:
    """What one task asks Ray for: one CPU, or a share of a GPU so that `runs_per_gpu` tasks train on each."""
    if task.device.startswith("cuda"):
        return {"num_cpus": 1, "num_gpus": 1 / runs_per_gpu}
    return {"num_cpus": 1}


def submit(tasks: list[Task], data: MNIST | None, *, address: str | None = None, num_cpus: int | None = None,
           runs_per_gpu: int = 1, max_retries: int = DEFAULT_RETRIES) -> dict:
    """Submit every task at once (MNIST put in the object store once); {Ray object ref: task}."""
    from ..engine.data import load_mnist

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


def result(ref, max_retries: int = DEFAULT_RETRIES) -> tuple[list[tuple[dict, bytes]], dict]:
    """A submitted task's (records and weights, where it ran: where_am_i), waiting for it; its failure as an exception:
    the task's own (e.g. bad arguments), or a RuntimeError when its worker died more often than allowed."""
    ray = import_ray()
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # raised in the worker: the cause is the task's own exception
        raise (e.cause if isinstance(e.cause, Exception) else RuntimeError(str(e))) from None
    except ray.exceptions.RayError as e:
        raise RuntimeError(f"{type(e).__name__} after {max_retries} retries: {str(e).splitlines()[0]}") from None


def run_on_ray(tasks: list[Task], tracker: Tracker, data: MNIST | None, *, max_retries: int = DEFAULT_RETRIES,
               **options) -> None:
    """Submit every task, then write each one's records as it finishes (runner.Tracker)."""
    refs = submit(tasks, data, max_retries=max_retries, **options)
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
            tracker.finished(task, encoded, where=f" on {node['host']} ({node['ip']})", retries=node["attempt"])
    except BaseException:
        for ref in pending:  # Ctrl-C: nothing more trains; what has been written stays
            ray.cancel(ref, force=True)
        raise


def run_tasks(tasks: list[Task], data: MNIST | None = None, **options) -> list[str]:
    """runner.run_tasks with the tasks on Ray (`options`: run_on_ray's keywords); the failed tasks' errors."""
    from functools import partial

    # Ray is started only when there is something to train; submit reads MNIST once, for all the tasks.
    return runner.run_tasks(tasks, 0, data, run_elsewhere=partial(run_on_ray, **options) if tasks else None)


def parse_retries(text: str) -> int:
    """--max-retries: a whole number from 0 to MAX_RETRIES (Ray reads -1 as forever, which is not offered)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 6 and int(text) <= MAX_RETRIES):
        raise ValueError(f"must be a whole number from 0 to {MAX_RETRIES}, got {text!r}")
    return int(text)

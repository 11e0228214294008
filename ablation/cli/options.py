"""The command line's options: the argument types (each refuses a bad value in one line that names it) and the
options several commands take, each declared once in a parent parser that a command names in parents=[...].
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..reference import notebook
from ..runs import ray_backend
from ..study.registry import get_step, parse_seeds, parse_steps
from ..study.step import MAX_EPOCHS

# What --quick trains on: a smoke test of the whole path in seconds, one epoch.
QUICK = dict(limit_train=2048, limit_test=1000)
MAX_THREADS = 256


class Parser(argparse.ArgumentParser):
    """argparse, refusing in one line (`python -m ablation run: error: ...`) and exit status 2: a script or
    a log reads the refusal without the usage block (--help shows that)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


# --- argument types: each refuses a bad value in one line that names it ------------------------------

def bounded_int(most: int):
    """An argparse type: a whole number from 1 to `most`."""
    def positive_int(text: str) -> int:
        text = text.strip()
        value = int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else 0
        if not 0 < value <= most:
            raise argparse.ArgumentTypeError(f"must be a positive integer up to {most:,}, got {text!r}")
        return value
    return positive_int


positive_int = bounded_int(10**9)


def checked(convert):
    """An argparse type from a library function: its ValueError or KeyError, in argparse's one line."""
    def argument(text: str):
        try:
            return convert(text)
        except (ValueError, KeyError) as e:
            raise argparse.ArgumentTypeError(str(e.args[0] if e.args else e)) from None
    return argument


step_name = checked(get_step)
seed_list = checked(parse_seeds)
step_list = checked(parse_steps)
ray_address = checked(ray_backend.parse_address)  # its reachability is check_backend's
retry_count = checked(ray_backend.parse_retries)
engine_details = checked(lambda text: notebook.check_like_engine(text.split(",")))  # --like-engine augment,order


# --- options that several commands take, each declared once (a command names them in parents=[...]) ------

def parent(title: str | None = None):
    """A parent parser and where its options go: a titled section of --help, or the command's own options."""
    p = argparse.ArgumentParser(add_help=False)  # -h is the command's own
    return p, (p.add_argument_group(title) if title else p)


def one_option(*flags: str, **kwargs) -> argparse.ArgumentParser:
    p, o = parent()
    o.add_argument(*flags, **kwargs)
    return p


def data_options() -> argparse.ArgumentParser:
    return one_option("--data-dir", default=None, help="folder holding MNIST/raw (default: $ABLATION_DATA, else ./data)")


def device_options(default: str = "auto") -> argparse.ArgumentParser:
    return one_option("--device", default=default, choices=["auto", "cpu", "cuda"],
                      help=f"auto is cuda when present (default {default})")


def selection_options(steps: str) -> argparse.ArgumentParser:
    """What run and notebook train: --steps (default `steps`), --seeds, --epochs, --quick."""
    p, o = parent("what trains")
    o.add_argument("--steps", type=step_list, default=steps,
                   help="comma-separated step names, 'final' for the step the mission is judged on, or 'all' "
                        "(default %(default)s)")
    o.add_argument("--seeds", type=seed_list, default=None, help="e.g. 0-4 or 0,3 (default: each step's own seeds)")
    o.add_argument("--epochs", type=bounded_int(MAX_EPOCHS), default=None, help="override every step's epochs")
    o.add_argument("--quick", action="store_true", help="smoke run: one epoch on 2,048 training and 1,000 test images")
    return p


def variant_options() -> argparse.ArgumentParser:
    return one_option("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                      help="a variant: the step with a field changed (repeatable), e.g. --set lr=0.1 --set "
                           "schedule.final_epoch=12, or a network: --set \"layout=('conv3:8', 'conv3:10', 'conv1:8', "
                           "'pool', 'conv3:10', 'conv3:16', 'conv3:16', 'conv3p:16', 'gap', 'conv1:10')\"")


def training_options() -> argparse.ArgumentParser:
    """Where and how wide run and screen train: threads, processes, or Ray."""
    p, o = parent("where runs train")
    o.add_argument("--threads", type=bounded_int(MAX_THREADS), default=None,
                   help="CPU threads per process (default $ABLATION_THREADS or 1)")
    o.add_argument("--jobs", type=positive_int, default=None,
                   help="runs trained in parallel processes (default: one per CPU core on cpu, 1 on cuda); with "
                        "--backend ray and no --address, the CPUs of the local Ray")
    o.add_argument("--backend", choices=["process", "ray"], default="process",
                   help="process: a pool of worker processes on this machine (default); ray: Ray tasks on a local Ray "
                        f"or a cluster, one CPU (or a share of a GPU) each (needs: {ray_backend.INSTALL})")
    o.add_argument("--address", type=ray_address, default=None,
                   help="with --backend ray: the cluster to use, HOST:PORT of its head or 'auto' (the one `ray start` "
                        "made on this machine); checked before anything loads (default: start a local Ray for this "
                        "command)")
    o.add_argument("--runs-per-gpu", type=positive_int, default=1,
                   help="with --backend ray --device cuda: runs that share one GPU (each asks for 1/N of it; default 1)")
    o.add_argument("--max-retries", type=retry_count, default=ray_backend.DEFAULT_RETRIES,
                   help=f"with --backend ray: times a run whose worker died is tried again, 0 to "
                        f"{ray_backend.MAX_RETRIES} (default {ray_backend.DEFAULT_RETRIES})")
    return p


def records_options(default: Path) -> argparse.ArgumentParser:
    return one_option("--runs", type=Path, default=default, help=f"records folder (default {default})")


def json_options() -> argparse.ArgumentParser:
    return one_option("--json", action="store_true", help="print JSON instead of a table")

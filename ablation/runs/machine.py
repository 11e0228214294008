"""The machine a run is computed on: its device's name and, on a CPU, its float path (the vector instructions
ATen's kernels and oneDNN's convolutions use). Two runs of one code round alike only where these agree, so a
record keeps them (records.provenance) and a comparison names where they differ.
"""
from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import torch


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _onednn_isa() -> str | None:
    """The instruction set oneDNN's convolutions run on here, as oneDNN names it ("Intel AVX2"), or None when it
    cannot be told. oneDNN prints it once per process, on stdout, the first time verbose output is on."""
    if not torch.backends.mkldnn.is_available():
        return None
    if sys.stdout is not None:
        sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no standard output to borrow: the ISA goes unnamed
        return None
    try:
        with tempfile.TemporaryFile() as f:
            os.dup2(f.fileno(), 1)
            try:
                with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                    # Large enough that torch takes oneDNN's path (a tiny convolution does not).
                    torch.nn.functional.conv2d(torch.zeros(2, 8, 16, 16), torch.zeros(8, 8, 3, 3))
            finally:
                os.dup2(saved, 1)
            f.seek(0)
            text = f.read().decode(errors="replace")
    finally:
        os.close(saved)
    found = re.search(r"info,cpu,isa:([^\n]+)", text)
    return found.group(1).strip() if found else None


@lru_cache(maxsize=1)
def float_path() -> dict:
    """What, besides the code, the libraries and the CPU model, decides how a CPU run rounds its floats:
    the vector instructions ATen's kernels were dispatched to and those oneDNN's convolutions use (which a
    cap such as ONEDNN_MAX_CPU_ISA=AVX2 lowers, as on an older CPU). Read once per process."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or None
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "onednn_isa": _onednn_isa(),
            "onednn_isa_cap": cap.upper() if cap else None}


# The instruction sets in provenance (float_path): records made before it held them say nothing of them, and are
# compared on them only where both say; none of them was made under a oneDNN cap (no session set one before the
# key existed), so a missing cap reads as none.
FLOAT_PATH_KEYS = ("cpu_capability", "onednn_isa")


def float_path_gap(a: dict, b: dict) -> list[str]:
    """The float-path fields in which two provenances differ (FLOAT_PATH_KEYS where both name them, and the cap)."""
    differ = [k for k in FLOAT_PATH_KEYS if k in a and k in b and a[k] != b[k]]
    return differ + (["onednn_isa_cap"] if a.get("onednn_isa_cap") != b.get("onednn_isa_cap") else [])


def float_path_differences(record: dict) -> list[str]:
    """How the CPU float path a record was made on differs from this process's (CPU model, then float_path_gap);
    empty when it is the same. Evaluating its weights here may then round otherwise: an image may flip."""
    made, here = record["provenance"], {"device_name": device_name("cpu"), **float_path()}
    return ["device_name"] * ("device_name" in made and made["device_name"] != here["device_name"]) + \
        float_path_gap(made, here)

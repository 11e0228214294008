"""The layout language a step writes its network in, and its test-time views: parsed and checked here,
without torch, so a step is refused before anything is built. models.py builds the network.

A layout is a tuple of tokens, read left to right:

    conv3:16    3x3 convolution to 16 channels, no padding ("conv3p:16" pads by 1)
    conv1:8     1x1 convolution (a "transition" that mixes channels cheaply)
    pool        2x2 max-pool, stride 2
    gap         global average pooling to 1x1
    conv6:10    any other kernel size, e.g. a 6x6 convolution that sees a whole 6x6 map
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NUM_CLASSES = 10
_TOKEN = re.compile(r"conv(?P<k>\d+)(?P<pad>p?):(?P<out>\d+)$|(?P<pool>pool)$|(?P<gap>gap)$")


@dataclass(frozen=True)
class Layer:
    kind: str  # "conv", "pool" or "gap"
    kernel: int = 1  # pixels; for pool the window (2)
    padding: int = 0  # pixels
    out_channels: int = 0  # for conv only


def parse_layout(layout: tuple[str, ...]) -> list[Layer]:
    """Turn layout tokens into layers; raise ValueError naming the first bad token."""
    layers = []
    for token in layout:
        m = _TOKEN.match(token)
        if not m:
            raise ValueError(f"bad layout token {token!r}: expected convK:C, convKp:C, pool or gap")
        if m["pool"]:
            layers.append(Layer("pool", kernel=2))
        elif m["gap"]:
            layers.append(Layer("gap"))
        else:
            k = int(m["k"])
            layers.append(Layer("conv", kernel=k, padding=(k // 2) if m["pad"] else 0, out_channels=int(m["out"])))
    convs = [l for l in layers if l.kind == "conv"]
    if not convs or layers[-1] != convs[-1] or convs[-1].out_channels != NUM_CLASSES:
        raise ValueError(f"layout {layout} must end with a convolution to {NUM_CLASSES} channels")
    return layers


IMAGE_SIZE = 28


def test_time_shifts(shifts) -> tuple[tuple[int, int], ...]:
    """`shifts` as a tuple of (dx, dy) pairs of whole pixels (from tuples, or a record's JSON lists).

    Checked when a step or network is made, so a bad value fails before any training, not at the first
    evaluation: each shift must be a pair of integers smaller than the image in size."""
    out = []
    for item in shifts:
        pair = tuple(item) if isinstance(item, (tuple, list)) else (item,)
        if len(pair) != 2 or not all(isinstance(d, int) and not isinstance(d, bool) for d in pair) \
                or not all(abs(d) < IMAGE_SIZE for d in pair):
            raise ValueError(f"test-time shift {item!r} is not a pair of whole pixels (dx, dy), each between "
                             f"{1 - IMAGE_SIZE} and {IMAGE_SIZE - 1}; write several as ((1, 0), (0, 1))")
        out.append(pair)
    return _distinct_views(tuple(out), (0, 0), "shift")


def test_time_rotations(angles) -> tuple[float, ...]:
    """`angles` (degrees) as a tuple of floats, checked when a step or network is made."""
    if not isinstance(angles, (tuple, list)):
        raise ValueError(f"test-time rotations {angles!r} are not a tuple of angles; write one as (5.0,)")
    out = []
    for a in angles:
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not abs(a) <= 180:
            raise ValueError(f"test-time rotation {a!r} is not an angle in degrees between -180 and 180; "
                             f"write several as (5.0, -5.0)")
        out.append(float(a))
    return _distinct_views(tuple(out), 0.0, "rotation")


def _distinct_views(views: tuple, identity, kind: str) -> tuple:
    # The image itself is always a view; a view equal to it, or one listed twice, would weigh it twice.
    if identity in views or len(set(views)) != len(views):
        raise ValueError(f"test-time {kind}s {views} repeat a view or the image itself ({identity!r}); "
                         f"each view must be distinct")
    return views

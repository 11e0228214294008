"""The networks: the module a layout builds.

The layout language (conv3:16, conv3p:16, pool, gap, ...) is read by study/layout.py.

Every convolution but the last is followed by BatchNorm (when the step has it), ReLU and dropout
(when the step has it). 1x1 transitions get ReLU only: the seed's 9,752 counts BatchNorm after
the 3x3 convolutions alone. The last convolution is the classifier: no
BatchNorm, ReLU or dropout after it. No convolution has a bias: BatchNorm's shift makes it redundant,
and the seed's parameter counts (9,752) only add up without them.

`Net(..., shifts=((1, 0), ...))` evaluates with test-time augmentation: in eval mode it averages the
softmax over the image and copies of it moved by those (dx, dy) pixels, and returns the log of that
average (log-probabilities, not logits). `rotations=(5.0, -5.0)` adds views of the image turned by those
angles (degrees, bilinear, the border filled with background). Training is untouched, so the weights are
the same as without.

`Net(..., seeds=K)` holds K independent copies of the network as one network of grouped
convolutions: seed k reads input channel k and owns the k-th slice of every weight, so K seeds train
in one pass (see train.py). K=1 is the plain network that `build_model` returns.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..study.analysis import text_table
from ..study.layout import NUM_CLASSES, parse_layout, test_time_rotations, test_time_shifts
from ..study.step import Step

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
class SeedDropout(nn.Module):
    """Dropout whose mask for seed k comes from generator k alone.

    nn.Dropout draws from the global RNG, so seed k's masks would depend on which other seeds share
    the pass. Here each seed draws its own (N, C, H, W) mask in a fixed order, exactly as a one-seed
    run draws it, which is what lets a K-seed run reproduce K one-seed runs. The trainer sets
    `generators`; without them (e.g. a user's own loop) the global RNG is used.
    """

    def __init__(self, p: float, seeds: int):
        super().__init__()
        self.p, self.seeds = p, seeds
        self.generators: list[torch.Generator] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        n, kc, h, w = x.shape
        shape = (n, kc // self.seeds, h, w)
        gens = self.generators or [None] * self.seeds
        keep = torch.cat([torch.rand(shape, generator=g, device=x.device) >= self.p for g in gens], dim=1)
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, seeds={self.seeds}"


class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """Global average pooling. An nn.AdaptiveAvgPool2d to 1x1, so that a reader or a grader's isinstance check
    knows it for what it is; computed as x.mean((2, 3)), as AdaptiveAvgPool2d's own kernel has no deterministic
    CUDA backward (and x.mean is what every record was trained with)."""

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class Net(nn.Module):
    """The network of a layout; K seeds side by side when seeds=K (input (N, K, 28, 28), output (N, K, 10))."""

    def __init__(self, layout: tuple[str, ...], batchnorm: bool = True, dropout: float = 0.0, seeds: int = 1,
                 shifts: tuple[tuple[int, int], ...] = (), rotations: tuple[float, ...] = ()):
        super().__init__()
        self.layout, self.seeds = tuple(layout), seeds
        self.shifts, self.rotations = test_time_shifts(shifts), test_time_rotations(rotations)
        layers = parse_layout(layout)
        last_conv = max(i for i, l in enumerate(layers) if l.kind == "conv")
        blocks: list[nn.Module] = []
        channels = 1
        for i, layer in enumerate(layers):
            if layer.kind == "pool":
                blocks.append(nn.MaxPool2d(2))
            elif layer.kind == "gap":
                blocks.append(GlobalAvgPool())
            else:
                out = layer.out_channels
                block = [nn.Conv2d(channels * seeds, out * seeds, layer.kernel, padding=layer.padding, bias=False,
                                   groups=seeds)]
                if i != last_conv:
                    if batchnorm and layer.kernel > 1:
                        block.append(nn.BatchNorm2d(out * seeds))
                    block.append(nn.ReLU(inplace=True))  # nothing reads its input again: one tensor fewer
                    if dropout > 0 and layer.kernel > 1:
                        block.append(SeedDropout(dropout, seeds))
                blocks.append(nn.Sequential(*block) if len(block) > 1 else block[0])
                channels = out
        self.features = nn.Sequential(*blocks)
        # Channels-last (NHWC) is the layout oneDNN's convolutions run fastest in on the CPU (the train step of this
        # network 1.3-1.5x against NCHW, measured in one process; reports/STUDY.md, "Engine generation 2"); the
        # weights keep it through .to(), deepcopy and load_state_dict, and _logits puts the input in it.
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not (self.shifts or self.rotations):
            return self._logits(x)
        views = [x] + [shift(x, dx, dy) for dx, dy in self.shifts] + [rotate(x, a) for a in self.rotations]
        # log(mean(softmax)) through logsumexp, so a probability that underflows to 0 never gives log(0)
        log_probs = torch.stack([self._logits(v).log_softmax(-1) for v in views])
        return torch.logsumexp(log_probs, 0) - math.log(len(views))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x.contiguous(memory_format=torch.channels_last))
        if y.shape[-2:] != (1, 1):
            raise ValueError(f"layout {self.layout} leaves a {tuple(y.shape[-2:])} map for 28x28 input, not 1x1")
        y = y.flatten(1)
        return y if self.seeds == 1 else y.view(len(y), self.seeds, NUM_CLASSES)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in (("shifts", self.shifts), ("rotations", self.rotations)) if v)

    def set_dropout_generators(self, generators: list[torch.Generator] | None) -> None:
        for m in self.modules():
            if isinstance(m, SeedDropout):
                m.generators = generators


def for_step(step) -> Net:
    """The one-seed network a step describes (a Step, or anything with its layout, batchnorm, dropout, tta
    and tta_rotations): the one place a step's fields become a network, so every caller gets its test-time
    views too."""
    return Net(step.layout, batchnorm=step.batchnorm, dropout=step.dropout, shifts=step.tta,
               rotations=step.tta_rotations)


def for_config(config: dict) -> Net:
    """The one-seed network of a record's `config` (a variant no registry step may describe); fields
    added after the record was made are at their defaults, as the record was made with them."""
    return Net(tuple(config["layout"]), batchnorm=config["batchnorm"], dropout=config["dropout"],
               shifts=config.get("tta", ()), rotations=config.get("tta_rotations", ()))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] images -> the normalised input every model expects."""
    if images.dtype == torch.uint8:
        images = images.float() / 255
    return (images - MNIST_MEAN) / MNIST_STD


# Test images per forward pass: small enough that a chunk's activations stay in cache (2,000 images make
# 50 MB maps, each written to fresh memory: ~2.5x slower per image on the 2-core EPYC).
EVAL_CHUNK = 256


@torch.no_grad()
def evaluate(model: Net, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per seed: (summed cross-entropy, number correct) over all `images`, on the device."""
    model.eval()
    k = model.seeds
    loss, correct = torch.zeros(k, device=images.device), torch.zeros(k, device=images.device)
    for i in range(0, len(images), EVAL_CHUNK):
        x = normalize(images[i:i + EVAL_CHUNK]).unsqueeze(1).expand(-1, k, -1, -1)
        y = labels[i:i + EVAL_CHUNK]
        logits = model(x).view(len(x), k, -1)
        loss += F.cross_entropy(logits.transpose(1, 2), y[:, None].expand(-1, k), reduction="none").sum(0)
        correct += (logits.argmax(-1) == y[:, None]).sum(0)
    return loss, correct


# A blank pixel after `normalize`: what an image moved or turned by test-time augmentation is filled with.
BACKGROUND = -MNIST_MEAN / MNIST_STD


def shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Normalised images (..., H, W) moved dx pixels right and dy down; the uncovered border is background."""
    h, w = x.shape[-2:]
    out = torch.full_like(x, BACKGROUND)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Normalised images (N, C, H, W) turned `degrees` about their centre (bilinear); the corners that come
    from outside the image are background. Turning x - BACKGROUND with zero fill and adding it back is,
    since bilinear sampling is linear, the normalised image of the raw image turned with zero fill."""
    rad = math.radians(degrees)
    theta = torch.tensor([[math.cos(rad), -math.sin(rad), 0.0], [math.sin(rad), math.cos(rad), 0.0]],
                         dtype=x.dtype, device=x.device).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - BACKGROUND, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + BACKGROUND


def stack_seeds(models: list[Net]) -> Net:
    """K one-seed networks -> one K-seed network whose slice k is exactly models[k]."""
    first = models[0]
    k = len(models)
    dropout = next((m.p for m in first.modules() if isinstance(m, SeedDropout)), 0.0)
    batchnorm = any(isinstance(m, nn.BatchNorm2d) for m in first.modules())
    stacked = Net(first.layout, batchnorm=batchnorm, dropout=dropout, seeds=k, shifts=first.shifts,
                  rotations=first.rotations)
    with torch.no_grad():
        for name, tensor in stacked.state_dict().items():
            parts = [m.state_dict()[name] for m in models]
            tensor.copy_(parts[0] if tensor.dim() == 0 else torch.cat(parts, dim=0))
    return stacked


def unstack_seeds(stacked: Net) -> list[dict[str, torch.Tensor]]:
    """The inverse of stack_seeds on state dicts: one plain state_dict per seed."""
    k = stacked.seeds
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(k)]
    for name, tensor in stacked.state_dict().items():
        for i in range(k):
            out[i][name] = tensor.clone() if tensor.dim() == 0 else tensor.chunk(k, dim=0)[i].clone()
    return out


# --- the per-layer table and the receptive field -------------------------------------------------

def layer_table(model: Net, image_size: int = 28) -> list[dict]:
    """One row per layer of `model`: output shape, parameters, MACs, receptive field and jump.

    MACs come from torch.utils.flop_counter on a one-image forward (FLOPs / 2); the receptive field
    r and jump j follow r += (k - 1) * j, j *= stride, with global average pooling as a kernel the
    size of its input map.
    """
    from torch.utils.flop_counter import FlopCounterMode

    rows = []
    x = torch.zeros(1, model.seeds, image_size, image_size)
    r, j = 1, 1
    model = model.eval()
    for i, block in enumerate(model.features):
        first = block[0] if isinstance(block, nn.Sequential) else block
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            y = block(x)
        if isinstance(first, nn.Conv2d):
            k, s = first.kernel_size[0], first.stride[0]
            rest = list(block)[1:] if isinstance(block, nn.Sequential) else []
            name = f"conv{k}x{k} {first.in_channels // model.seeds}→{first.out_channels // model.seeds}"
            name += f" pad {first.padding[0]}" if first.padding[0] else ""
            extras = [f"Dropout({m.p:g})" if isinstance(m, SeedDropout) else type(m).__name__.replace("2d", "")
                      for m in rest]
            name += "".join(f", {e}" for e in extras)
        elif isinstance(first, nn.MaxPool2d):
            k, s, name = 2, 2, "max-pool 2x2"
        elif isinstance(first, GlobalAvgPool):
            k, s, name = x.shape[-1], 1, "global average pool"
        else:
            raise TypeError(f"no receptive-field rule for {type(first).__name__}")
        r, j = r + (k - 1) * j, j * s
        rows.append({"layer": name, "output": tuple(y.shape[1:]), "params": sum(p.numel() for p in block.parameters()),
                     "macs": counter.get_total_flops() // 2, "rf": r, "jump": j})
        x = y
    return rows


def receptive_field(model: Net) -> int:
    return layer_table(model)[-1]["rf"]


def receptive_field_probe(model: Net, image_size: int = 28) -> int:
    """The receptive field measured: the side of the input box whose pixels move one output unit.

    A geometric copy of the trunk (every convolution with all-ones weights, max-pool as average pool
    so that every pixel of a window passes gradient, BatchNorm, ReLU and dropout dropped: they do not
    change geometry) is run on a blank input much larger than the field; the gradient of the centre
    unit of its last map is non-zero exactly on the pixels that unit sees. For a GAP network the probe
    stops before the pooling, and the pooled map's extent is added as the formula does.
    """
    probe: list[nn.Module] = []
    pooled_side = None
    x = torch.zeros(1, model.seeds, image_size, image_size)
    for block in model.features:
        if isinstance(block, GlobalAvgPool):
            pooled_side = x.shape[-1]
            break
        for m in (block if isinstance(block, nn.Sequential) else [block]):
            if isinstance(m, nn.Conv2d):
                conv = nn.Conv2d(1, 1, m.kernel_size, stride=m.stride, padding=m.padding, bias=False)
                nn.init.ones_(conv.weight)
                probe.append(conv)
            elif isinstance(m, nn.MaxPool2d):
                probe.append(nn.AvgPool2d(m.kernel_size, m.stride))
        with torch.no_grad():
            x = block.eval()(x)
    trunk = nn.Sequential(*probe)

    def seen_columns(col_offset: int) -> torch.Tensor:
        inp = torch.zeros(1, 1, image_size * 4, image_size * 4, requires_grad=True)
        out = trunk(inp)
        h, w = out.shape[-2:]
        out[0, 0, h // 2, w // 2 + col_offset].backward()
        return inp.grad[0, 0].abs().sum(0).nonzero()

    cols, next_cols = seen_columns(0), seen_columns(1)
    field = int(cols.max() - cols.min() + 1)
    if pooled_side is not None:
        jump = int(next_cols.min() - cols.min())  # how far the field moves per unit of the map, measured
        field += (pooled_side - 1) * jump
    return field


def check_network(step: Step) -> None:
    """ValueError unless `step`'s network takes a 28x28 image to ten outputs (a layout can parse and still
    not fit: a map left larger than 1x1, or shrunk below a kernel)."""
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            for_step(step).eval()(torch.zeros(1, 1, 28, 28))
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"layout={step.layout!r} is not allowed: {str(e).splitlines()[0]}") from None


def layer_summary(step, model: Net) -> str:
    """The layer table of `step`'s network as text, with the multiply-adds of its test-time views."""
    rows = layer_table(model)
    macs = sum(r["macs"] for r in rows)
    lines = [f"{step.name}: {step.layout}",
             text_table([[r["layer"], "x".join(map(str, r["output"])), f"{r['params']:,}", f"{r['macs']:,}", r["rf"],
                          r["jump"]] for r in rows] + [["total", "", f"{sum(r['params'] for r in rows):,}", f"{macs:,}", "", ""]],
                        ["layer", "output", "params", "MACs", "RF", "jump"])]
    views = 1 + len(step.tta) + len(step.tta_rotations)
    if views > 1:
        # test-time views run the whole network once each: the MACs above, per view
        copies = [f"shifts {list(step.tta)}" if step.tta else "",
                  f"rotations {list(step.tta_rotations)}" if step.tta_rotations else ""]
        lines.append(f"evaluated over {views} views (the image, {' and '.join(c for c in copies if c)}): "
                     f"{views * macs:,} MACs per test image")
    return "\n".join(lines)

"""MNIST as four uint8 tensors, read once, checked against known checksums, moved to the device once.

Where the files are: `data_dir` argument (the CLI's --data-dir), else $ABLATION_DATA, else ./data.
The folder holds MNIST/raw/ as torchvision lays it out. When the files are absent, torchvision's
download is tried; if that fails too, one error says where we looked and how to fix it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

ENV_VAR = "ABLATION_DATA"
DEFAULT_DIR = "data"

# Facts about the original files (the same values torchvision's mirrors serve, uncompressed).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


class DataError(RuntimeError):
    """MNIST could not be found, fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class MNIST:
    """Images as (N, 28, 28) uint8 and labels as (N,) int64, all on one device."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def to(self, device: str | torch.device) -> "MNIST":
        return MNIST(*(t.to(device) for t in (self.train_images, self.train_labels, self.test_images, self.test_labels)))

    def holdout(self, size: int, seed: int = 0, fold: int = 0) -> "MNIST":
        """Split `size` images off the training set as the evaluation set (the test set is left out).

        Design choices are made on this split so the test set is looked at once, at the end. The
        split is a fixed permutation of the training set from `seed`, the same for every run; fold k
        holds out its k-th block of `size` images, so folds 0, 1, ... are disjoint (k-fold validation).
        """
        n = len(self.train_labels)
        check_holdout(n, size, fold)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        perm = perm.to(self.train_labels.device)
        start, stop = fold * size, (fold + 1) * size
        fit, val = torch.cat([perm[:start], perm[stop:]]), perm[start:stop]
        return MNIST(self.train_images[fit], self.train_labels[fit], self.train_images[val], self.train_labels[val])


def check_holdout(n: int, size: int, fold: int = 0) -> None:
    """Raise ValueError unless fold `fold` of `size` images fits in a training set of `n`."""
    if not 0 < size < n:
        raise ValueError(f"holdout size must be between 1 and {n - 1}, got {size}")
    if not 0 <= fold < n // size:
        raise ValueError(f"fold must be between 0 and {n // size - 1} for a holdout of {size}, got {fold}")


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    return Path(data_dir or os.environ.get(ENV_VAR) or DEFAULT_DIR)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(raw: Path) -> None:
    """Raise DataError naming every raw file that is missing, truncated or corrupt."""
    bad = []
    for name, expected in SHA256.items():
        path = raw / name
        if not path.is_file():
            bad.append(f"{path}: missing")
        elif sha256(path) != expected:
            bad.append(f"{path}: corrupt or truncated ({path.stat().st_size:,} bytes, SHA-256 mismatch)")
    if bad:
        raise DataError("MNIST files failed verification:\n  " + "\n  ".join(bad)
                        + "\nDelete them and download again, or point --data-dir / $ABLATION_DATA at good copies.")


def _fetch(root: Path) -> None:
    from torchvision.datasets import MNIST as TorchvisionMNIST

    try:
        for train in (True, False):
            TorchvisionMNIST(root=str(root), train=train, download=True)
    except Exception as e:  # any network or disk failure ends in the same advice
        raise DataError(
            f"MNIST not found under {root / 'MNIST' / 'raw'} and the download failed ({type(e).__name__}: {e}).\n"
            f"Fix it either way: pass --data-dir DIR (or set ${ENV_VAR}=DIR) where DIR/MNIST/raw holds the four "
            f"files, or run once with internet access so torchvision can download them into {root}."
        ) from e


@lru_cache(maxsize=4)
def _load_cpu(root: Path) -> MNIST:
    from torchvision.datasets import MNIST as TorchvisionMNIST

    raw = root / "MNIST" / "raw"
    if not all((raw / name).is_file() for name in SHA256):
        _fetch(root)
    verify(raw)
    train = TorchvisionMNIST(root=str(root), train=True, download=False)
    test = TorchvisionMNIST(root=str(root), train=False, download=False)
    return MNIST(train.data.clone(), train.targets.clone(), test.data.clone(), test.targets.clone())


def load_mnist(data_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> MNIST:
    """MNIST on `device`, read (and verified) once per process and data root."""
    return _load_cpu(data_root(data_dir).resolve()).to(device)


def evaluation_label(holdout: int = 0, fold: int = 0) -> str:
    """What a run's `evaluated_on` says for a holdout of `holdout` images (0: the test set), fold `fold`."""
    if not holdout:
        return "test"
    return f"validation ({holdout} held out of train{f', fold {fold}' if fold else ''})"


def misplaced_data(root: Path) -> None:
    """DataError when MNIST's four files sit in `root` itself or in `root`/raw: the data root was given a
    level or two too deep, and a download there would fail after making empty MNIST/raw folders."""
    for found, meant in ((root, root.parent.parent if root.name == "raw" and root.parent.name == "MNIST" else None),
                         (root / "raw", root.parent if root.name == "MNIST" else None)):
        if all((found / name).is_file() for name in SHA256):
            where = f"--data-dir {meant} (or ${ENV_VAR}={meant})" if meant else f"the files moved into {root}/MNIST/raw"
            raise DataError(f"MNIST's files are in {found}, but the data root is the folder that holds MNIST/raw: "
                            f"give {where}")


def load_mnist_checked(data_dir: str | os.PathLike | None = None) -> MNIST:
    """load_mnist for a command that is about to train: a data root given too deep is refused with the one meant
    (misplaced_data), and a download that fails leaves none of the empty folders it made behind."""
    root = data_root(data_dir)
    made = [d for d in (root, root / "MNIST", root / "MNIST" / "raw") if not d.exists()]
    try:
        misplaced_data(root)
        return load_mnist(data_dir)
    except DataError:
        for folder in reversed(made):
            try:
                folder.rmdir()  # only if the failed download left it empty
            except OSError:
                pass
        raise

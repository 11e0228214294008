"""MNIST loading: the real files when present, clear errors for missing or damaged ones."""
import shutil

import pytest
import torch

from ablation.engine import data as data_module
from ablation.engine.data import SHA256, TEST_LABEL_COUNTS, TRAIN_LABEL_COUNTS, DataError, load_mnist

pytestmark = pytest.mark.fast


def test_sizes_and_label_counts(mnist):
    assert mnist.train_images.shape == (60_000, 28, 28) and mnist.train_images.dtype == torch.uint8
    assert mnist.test_images.shape == (10_000, 28, 28)
    assert tuple(mnist.train_labels.bincount().tolist()) == TRAIN_LABEL_COUNTS
    assert tuple(mnist.test_labels.bincount().tolist()) == TEST_LABEL_COUNTS


def test_pixel_statistics_match_the_normalisation_constants(mnist):
    x = mnist.train_images.float() / 255
    assert x.mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert x.std().item() == pytest.approx(0.3081, abs=1e-4)


def test_holdout_is_a_fixed_disjoint_split(mnist):
    a, b = mnist.holdout(10_000), mnist.holdout(10_000)
    assert len(a.train_labels) == 50_000 and len(a.test_labels) == 10_000
    assert torch.equal(a.test_images, b.test_images)
    # no held-out image is also a training image of the split (compare by exact pixels)
    train_keys = {img.numpy().tobytes() for img in a.train_images[:5000]}
    assert not any(img.numpy().tobytes() in train_keys for img in a.test_images[:2000])


def test_holdout_folds_are_disjoint_and_fold_0_is_the_plain_split(mnist):
    plain, first, second = mnist.holdout(10_000), mnist.holdout(10_000, fold=0), mnist.holdout(10_000, fold=1)
    assert torch.equal(plain.test_images, first.test_images) and torch.equal(plain.train_images, first.train_images)
    assert len(second.train_labels) == 50_000 and len(second.test_labels) == 10_000
    held = lambda split: {img.numpy().tobytes() for img in split.test_images}
    fit = {img.numpy().tobytes() for img in second.train_images}
    assert not held(first) & held(second)  # MNIST has a few duplicate images; these 10,000 pairs share none
    assert not held(second) & fit
    with pytest.raises(ValueError, match="fold must be between 0 and 5"):
        mnist.holdout(10_000, fold=6)


def copy_raw(data_dir, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in SHA256:
        shutil.copy(data_dir / "MNIST" / "raw" / name, raw / name)
    return raw


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_file_is_named(data_dir, tmp_path, damage):
    raw = copy_raw(data_dir, tmp_path)
    victim = raw / "t10k-labels-idx1-ubyte"
    payload = victim.read_bytes()
    victim.write_bytes(payload[:-100] if damage == "truncate" else payload[:-1] + bytes([payload[-1] ^ 1]))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: corrupt or truncated"):
        load_mnist(tmp_path)


def test_missing_files_and_failed_download_give_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path / "empty")
    message = str(err.value)
    assert str(tmp_path / "empty") in message and "--data-dir" in message and "ABLATION_DATA" in message


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("ABLATION_DATA", str(tmp_path))
    assert data_module.data_root("explicit") == data_module.Path("explicit")
    assert data_module.data_root(None) == tmp_path
    monkeypatch.delenv("ABLATION_DATA")
    assert data_module.data_root(None) == data_module.Path("data")

"""Fashion-MNIST loading: the real files, MD5 checks, bad files, the decoded cache.

Every test that breaks a file works on copies in tmp_path: the Debian folder is never written.
"""

import gzip
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dropout_lab.config import DataConfig
from dropout_lab.data import (DEBIAN_DIR, ENV_DATA_DIR, FILES, batches, cache_path,
                              find_source, load_fashion_mnist, read_cache, write_cache)
from dropout_lab.errors import DataError, RunError

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    """The tests name their folders themselves; a user's $DROPOUT_LAB_DATA must not leak in."""
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)


@pytest.fixture(scope="module")
def source_dir():
    """The folder the real files are found in (Debian's, or $DROPOUT_LAB_DATA when set)."""
    return find_source(DataConfig(dir=os.environ.get(ENV_DATA_DIR), download=False))


@pytest.fixture(scope="module")
def decoded(tmp_path_factory, source_dir):
    """The real dataset, decoded from the source files into a fresh cache (not the user's).

    The source folder's listing is taken before the decode, for the never-write test.
    """
    cache = tmp_path_factory.mktemp("cache")
    source_before = snapshot(source_dir)
    data = load_fashion_mnist(DataConfig(dir=str(source_dir), cache_dir=str(cache)), CPU)
    return SimpleNamespace(data=data, cache_dir=cache, source_before=source_before)


@pytest.fixture(scope="module")
def dataset(decoded):
    return decoded.data


@pytest.fixture
def source_copy(tmp_path, source_dir) -> Path:
    """A private copy of the four .gz files, free to damage."""
    copy = tmp_path / "source"
    copy.mkdir()
    for name in FILES:
        shutil.copy(source_dir / name, copy / name)
    return copy


def config_for(source: Path, tmp_path: Path, **extra) -> DataConfig:
    return DataConfig(dir=str(source), cache_dir=str(tmp_path / "cache"), download=False, **extra)


def snapshot(folder: Path) -> dict:
    """Every entry's name -> (size, mtime): any write into the folder changes it."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


# --- the real data ------------------------------------------------------------------------

def test_real_split_sizes_and_types(dataset):
    assert dataset.train.images.shape == (60000, 784)
    assert dataset.test.images.shape == (10000, 784)
    assert dataset.train.labels.shape == (60000,)
    assert dataset.test.labels.shape == (10000,)
    for split in (dataset.train, dataset.test):
        assert split.images.dtype == torch.float32
        assert split.labels.dtype == torch.int64


def test_pixels_scaled_to_unit_range(dataset):
    for split in (dataset.train, dataset.test):
        # Fashion-MNIST uses the full 0..255 range, so the ends are reached exactly.
        assert split.images.min().item() == 0.0
        assert split.images.max().item() == 1.0


def test_classes_are_balanced(dataset):
    assert dataset.train.labels.bincount().tolist() == [6000] * 10
    assert dataset.test.labels.bincount().tolist() == [1000] * 10


def test_pixels_match_torchvision_decoder(dataset, source_dir, tmp_path):
    """An independent decoder (torchvision's) reads the same test images; / 255 as ToTensor."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(gzip.decompress((source_dir / f"{name}.gz").read_bytes()))
    images = read_image_file(str(tmp_path / "t10k-images-idx3-ubyte"))
    labels = read_label_file(str(tmp_path / "t10k-labels-idx1-ubyte"))
    assert torch.equal(dataset.test.images, images.reshape(-1, 784).float() / 255)
    assert torch.equal(dataset.test.labels, labels.long())


def test_standardize_uses_training_statistics(decoded):
    dataset = decoded.data
    cfg = DataConfig(cache_dir=str(decoded.cache_dir), standardize=True)
    standardized = load_fashion_mnist(cfg, CPU)
    # float32 sums over 47M values: mean and std hold to ~1e-5, so 1e-3 is safe.
    assert abs(standardized.train.images.mean().item()) < 1e-3
    assert abs(standardized.train.images.std().item() - 1.0) < 1e-3
    # The test split is shifted and scaled by the training statistics, not its own.
    mean, std = dataset.train.images.mean(), dataset.train.images.std()
    assert torch.allclose(standardized.test.images, (dataset.test.images - mean) / std, atol=1e-5)


def test_subsets_take_the_first_images(decoded):
    dataset = decoded.data
    cfg = DataConfig(cache_dir=str(decoded.cache_dir), subset=1000, test_subset=300)
    small = load_fashion_mnist(cfg, CPU)
    assert torch.equal(small.train.images, dataset.train.images[:1000])
    assert torch.equal(small.test.labels, dataset.test.labels[:300])


def test_md5_table_matches_torchvision():
    from torchvision.datasets import FashionMNIST

    assert {name: sums[0] for name, sums in FILES.items()} == dict(FashionMNIST.resources)


# --- bad source files --------------------------------------------------------------------

@pytest.mark.parametrize("name, size", [("train-labels-idx1-ubyte.gz", 1000),
                                        ("train-images-idx3-ubyte.gz", 100_000)])
def test_truncated_file_is_named(source_copy, tmp_path, name, size):
    damaged = source_copy / name
    damaged.write_bytes(damaged.read_bytes()[:size])
    with pytest.raises(DataError, match=f"{name} is corrupt or truncated") as caught:
        load_fashion_mnist(config_for(source_copy, tmp_path), CPU)
    assert str(damaged) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_corrupt_file_is_named(source_copy, tmp_path):
    damaged = source_copy / "t10k-labels-idx1-ubyte.gz"
    packed = bytearray(damaged.read_bytes())
    packed[len(packed) // 2] ^= 0xFF  # one flipped byte in the compressed data
    damaged.write_bytes(bytes(packed))
    with pytest.raises(DataError, match="corrupt") as caught:
        load_fashion_mnist(config_for(source_copy, tmp_path), CPU)
    assert str(damaged) in str(caught.value)
    assert not cache_path(config_for(source_copy, tmp_path)).exists()  # nothing bad was cached


def test_missing_file_is_named(source_copy, tmp_path):
    (source_copy / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is missing"):
        load_fashion_mnist(config_for(source_copy, tmp_path), CPU)


def test_env_var_names_the_folder(monkeypatch, tmp_path):
    missing = tmp_path / "from-env"
    monkeypatch.setenv(ENV_DATA_DIR, str(missing))
    with pytest.raises(DataError, match=str(missing)):
        load_fashion_mnist(DataConfig(cache_dir=str(tmp_path / "cache"), download=False), CPU)


# --- the cache -----------------------------------------------------------------------------

def test_cache_serves_later_loads_without_the_source(source_copy, tmp_path, dataset):
    cfg = config_for(source_copy, tmp_path)
    load_fashion_mnist(cfg, CPU)
    # The atomic write leaves exactly the cache file: no temp file beside it.
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache_path(cfg).name]
    for source_file in source_copy.iterdir():  # a second load must not need (or touch) the
        source_file.write_bytes(b"")  # source; the named folder itself still has to exist
    again = load_fashion_mnist(cfg, CPU)
    assert torch.equal(again.train.images, dataset.train.images)
    assert torch.equal(again.test.labels, dataset.test.labels)


def copy_cache(decoded, cfg: DataConfig) -> Path:
    """The module's valid cache, copied to where ``cfg`` looks for it."""
    cache = cache_path(cfg)
    cache.parent.mkdir(parents=True)
    shutil.copy(decoded.cache_dir / cache.name, cache)
    return cache


def test_truncated_cache_is_rebuilt(source_copy, tmp_path, decoded):
    cfg = config_for(source_copy, tmp_path)
    cache = copy_cache(decoded, cfg)
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    assert read_cache(cache) is None
    rebuilt = load_fashion_mnist(cfg, CPU)
    assert torch.equal(rebuilt.train.images, decoded.data.train.images)
    assert read_cache(cache) is not None  # the rebuilt cache is valid again


def test_altered_cache_is_not_trusted(tmp_path, decoded):
    cache = copy_cache(decoded, config_for(tmp_path, tmp_path))
    blob = bytearray(cache.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte inside the image data: only the checksum tells
    cache.write_bytes(bytes(blob))
    assert read_cache(cache) is None


def test_failed_cache_write_keeps_the_previous_cache(tmp_path, decoded, monkeypatch):
    """A write that dies half-way (full disk) leaves the old cache whole and no temp file."""
    cache = copy_cache(decoded, config_for(tmp_path, tmp_path))
    before = cache.read_bytes()

    def half_then_disk_full(obj, out):
        out.write(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_disk_full)  # fault injection, not a fake result
    with pytest.raises(RunError, match="No space left"):
        write_cache(cache, read_cache(cache))
    monkeypatch.undo()
    assert cache.read_bytes() == before
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]


def test_loading_never_writes_into_the_source_folder(decoded, source_dir):
    """``decoded`` read the real (Debian) folder into a fresh cache: the folder is unchanged."""
    assert snapshot(source_dir) == decoded.source_before


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="Debian's dataset-fashion-mnist not installed")
def test_debian_folder_is_found_by_default():
    assert find_source(DataConfig(download=False)) == DEBIAN_DIR


# --- batches -------------------------------------------------------------------------------

def test_shuffled_batches_cover_every_example_once(dataset):
    from dropout_lab.data import Split

    split = Split(dataset.train.images[:1000], torch.arange(1000))
    generator = torch.Generator().manual_seed(0)
    sizes, seen = [], []
    for images, labels in batches(split, 256, generator):
        assert torch.equal(images, split.images[labels])  # images travel with their labels
        sizes.append(len(labels))
        seen.append(labels)
    assert sizes == [256, 256, 256, 232]
    seen = torch.cat(seen)
    assert sorted(seen.tolist()) == list(range(1000))
    assert not torch.equal(seen, torch.arange(1000))  # shuffled (1/1000! chance of failing)

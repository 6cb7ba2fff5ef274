"""Fashion-MNIST: find the original files, check their MD5 sums, decode once into a cache,
and hold the tensors in memory (on the training device) for batching.

Where the files are looked for, in order: ``data.dir`` (or the env var ``DROPOUT_LAB_DATA``),
Debian's ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``), an
existing torchvision root (``FashionMNIST/raw`` under ``./data``, ``../data`` or the cache dir),
and last torchvision's download when ``data.download`` is true and the machine is online.
"""

import gzip
import hashlib
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from dropout_lab.config import TRAIN_IMAGES, DataConfig
from dropout_lab.errors import DataError, RunError
from dropout_lab.disk import atomic_write

ENV_DATA_DIR = "DROPOUT_LAB_DATA"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# name -> (MD5 of the .gz as torchvision lists it, MD5 of the decompressed idx data, shape).
# Debian recompresses the files, so their .gz sums differ while the data inside is the same.
FILES = {
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                   "f4a8712d7a061bf5bd6d2ca38dc4d50a", (60000, 28, 28)),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe",
                                   "9018921c3c673c538a1fc5bad174d6f9", (60000,)),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79",
                                  "8181f5470baa50b63fa0f6fddb340f0a", (10000, 28, 28)),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310",
                                  "15d484375f8d13e6eb1aabb0c3f46965", (10000,)),
}
CACHE_VERSION = 1
# The validation split's permutation: fixed, independent of the run's seed, so every run and
# every seed holds out the same images. numpy's legacy RandomState is frozen across versions.
VALIDATION_SEED = 20261203
FIX_HINT = (
    "install Debian's copy (apt-get install dataset-fashion-mnist) or point data.dir "
    f"(or ${ENV_DATA_DIR}) to a folder with the four original .gz files"
)


@dataclass
class Split:
    """One split held in memory: images (N, 784) float32, labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def head(self, count: int) -> "Split":
        """The first ``count`` examples (a view: no copy)."""
        return Split(self.images[:count], self.labels[:count])


@dataclass
class FashionMNIST:
    train: Split
    test: Split
    validation: Optional[Split] = None  # data.validation > 0: held out from the training images


# --- finding and checking the source files ------------------------------------------------

def candidate_dirs(cfg: DataConfig) -> List[Path]:
    """Folders to look in, in order (the user's choice first)."""
    named = cfg.dir or os.environ.get(ENV_DATA_DIR)
    if named:
        return [Path(named).expanduser()]  # a folder the user names is the only one tried
    dirs = [DEBIAN_DIR]
    for root in (Path("data"), Path("../data"), cache_dir(cfg) / "torchvision"):
        dirs.append(root / "FashionMNIST" / "raw")
    return dirs


def read_verified(path: Path) -> bytes:
    """The decompressed idx bytes of ``path``, checked against the known MD5 sums."""
    gz_md5, raw_md5, _ = FILES[path.name]
    if not path.is_file():
        raise DataError(f"Fashion-MNIST file {path} is missing; {FIX_HINT}")
    packed = path.read_bytes()
    try:
        raw = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error):
        raw = b""
    if hashlib.md5(packed).hexdigest() != gz_md5 and hashlib.md5(raw).hexdigest() != raw_md5:
        raise DataError(f"Fashion-MNIST file {path} is corrupt or truncated (MD5 does not match); "
                        f"replace it: {FIX_HINT}")
    return raw


def named_dir(cfg: DataConfig) -> Optional[Path]:
    """The folder the user named (data.dir or $DROPOUT_LAB_DATA), if any; it has to exist."""
    named = cfg.dir or os.environ.get(ENV_DATA_DIR)
    if named and not Path(named).expanduser().is_dir():
        raise DataError(f"data folder {Path(named).expanduser()} does not exist; {FIX_HINT}")
    return Path(named).expanduser() if named else None


def find_source(cfg: DataConfig) -> Path:
    """The first folder holding all four files; verified against the MD5 sums."""
    dirs = candidate_dirs(cfg)
    named = named_dir(cfg)
    for folder in dirs:
        if named or any((folder / name).exists() for name in FILES):
            return folder  # a partial or corrupt copy is an error (on reading), not skipped
    if cfg.download:
        return download(cache_dir(cfg) / "torchvision")
    raise DataError(f"Fashion-MNIST not found (looked in {', '.join(map(str, dirs))}); {FIX_HINT}")


def download(root: Path) -> Path:
    from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

    try:
        TorchvisionFashionMNIST(str(root), train=True, download=True)
        TorchvisionFashionMNIST(str(root), train=False, download=True)
    except Exception as error:  # torchvision raises several kinds when offline
        raise DataError(f"Fashion-MNIST not found locally and the download failed ({error}); "
                        f"{FIX_HINT}") from None
    return root / "FashionMNIST" / "raw"


def decode_idx(raw: bytes, shape: tuple, path: Path) -> torch.Tensor:
    """Decode idx bytes (big-endian int32 header: magic, dims; then uint8 data)."""
    ndim = len(shape)
    header = np.frombuffer(raw, dtype=">i4", count=1 + ndim)
    if header[0] != 0x800 + ndim or tuple(header[1:]) != shape:
        raise DataError(f"{path} is not a Fashion-MNIST idx file of shape {shape}; {FIX_HINT}")
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + ndim)).reshape(shape)
    return torch.from_numpy(data.copy())


# --- the cache -------------------------------------------------------------------------------

def cache_dir(cfg: DataConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dropout-lab"


def cache_path(cfg: DataConfig) -> Path:
    return cache_dir(cfg) / f"fashion-mnist-v{CACHE_VERSION}.pt"


def _checksum(tensors: dict) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for key in sorted(tensors):
        digest.update(tensors[key].numpy().tobytes())
    return digest.hexdigest()


def read_cache(path: Path) -> Optional[dict]:
    """The cached uint8 tensors, or None when the file is absent, truncated or altered."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, weights_only=True)
        tensors = blob["tensors"]
        if blob["checksum"] == _checksum(tensors):
            return tensors
    except Exception:  # any unreadable cache is rebuilt, never trusted
        pass
    return None


def write_cache(path: Path, tensors: dict) -> None:
    """Atomic (temp file + rename): jobs starting at once never read half a cache."""
    blob = {"tensors": tensors, "checksum": _checksum(tensors)}
    atomic_write(path, lambda out: torch.save(blob, out))


def load_raw(cfg: DataConfig) -> dict:
    """uint8 tensors train_images, train_labels, test_images, test_labels (from the cache)."""
    named_dir(cfg)  # a mistyped data.dir is an error even when the cache could answer
    cache = cache_path(cfg)
    tensors = read_cache(cache)
    if tensors is not None:
        return tensors
    source = find_source(cfg)
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    tensors = {}
    for key, (name, (_, _, shape)) in zip(keys, FILES.items()):
        tensors[key] = decode_idx(read_verified(source / name), shape, source / name)
    try:
        write_cache(cache, tensors)
    except RunError as error:  # a read-only cache folder costs time, not correctness
        warnings.warn(f"dataset cache not written: {error}", stacklevel=2)
    return tensors


# --- in-memory splits --------------------------------------------------------------------------

def load_fashion_mnist(cfg: DataConfig, device: torch.device) -> FashionMNIST:
    """The splits as float tensors on ``device``: pixels in [0, 1], or standardised."""
    raw = load_raw(cfg)
    train_index, validation_index = validation_split(len(raw["train_labels"]), cfg.validation)

    def split(prefix: str, index: Optional[torch.Tensor], limit: Optional[int]) -> Split:
        images, labels = raw[f"{prefix}_images"], raw[f"{prefix}_labels"]
        if index is not None:
            images, labels = images[index], labels[index]
        images, labels = images[:limit].reshape(-1, 28 * 28), labels[:limit].long()
        return Split(images.to(device=device, dtype=torch.float32).div_(255.0), labels.to(device))

    train, test = split("train", train_index, cfg.subset), split("test", None, cfg.test_subset)
    validation = split("train", validation_index, None) if cfg.validation else None
    if cfg.standardize:  # statistics of the training images only
        mean, std = train.images.mean(), train.images.std()
        for part in (train, test, validation):
            if part is not None:
                part.images.sub_(mean).div_(std)
    return FashionMNIST(train, test, validation)


def train_size(cfg: DataConfig) -> int:
    """How many training images ``load_fashion_mnist(cfg)`` gives, known before loading them
    (a schedule's length is counted in steps)."""
    remaining = TRAIN_IMAGES - cfg.validation
    return min(cfg.subset, remaining) if cfg.subset else remaining


def validation_split(n: int, validation: int):
    """(training indices, validation indices) of ``n`` images: the validation images are the
    last ``validation`` of a fixed permutation; the training images keep their order (so
    data.subset still takes the first N of them). (None, None) when ``validation`` is 0."""
    if not validation:
        return None, None
    order = np.random.RandomState(VALIDATION_SEED).permutation(n)
    held_out = np.sort(order[n - validation:])
    kept = np.sort(order[:n - validation])
    return torch.from_numpy(kept), torch.from_numpy(held_out)


def batches(split: Split, batch_size: int, generator: Optional[torch.Generator] = None):
    """(images, labels) mini-batches; shuffled with ``generator`` when one is given."""
    n = len(split)
    if generator is None:
        for start in range(0, n, batch_size):
            yield split.images[start:start + batch_size], split.labels[start:start + batch_size]
        return
    order = torch.randperm(n, generator=generator).to(split.images.device)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield split.images.index_select(0, index), split.labels.index_select(0, index)

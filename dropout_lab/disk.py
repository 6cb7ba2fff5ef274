"""Writing safely to disk: atomic writes (readers see the old file or the new one, never half
of one), and the folder checks a run makes before it writes: writable, and not in use by
another process."""

import fcntl
import glob
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from dropout_lab.errors import RunError

TEMP_SUFFIX = ".tmp"  # atomic_write's temp file for PATH: .PATH_NAME.RANDOM.tmp, next to it
PROBE_BYTES = 64 * 1024  # more than Hydra writes into a new run folder before training


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(handle)`` on a temp file next to ``path``, fsync it, then rename it over.

    A crash, a kill or a full disk while writing leaves the previous ``path`` intact and no
    temp file behind; an unwritable folder raises RunError naming the path.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX,
                                        dir=path.parent)
    except OSError as error:
        raise RunError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        raise RunError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def remove_temp_files(path: Path) -> None:
    """Delete the temp files a process killed inside ``atomic_write(path, ...)`` left behind.

    Only for a folder one process writes at a time (a run folder), or it would pull another
    writer's temp file from under it.
    """
    path = Path(path)
    for temp in path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_SUFFIX}"):
        temp.unlink(missing_ok=True)


def check_writable_dir(folder: Path) -> None:
    """Create ``folder`` and write (and drop) a nameless probe file in it, so that a read-only or
    full filesystem fails here with one clear RunError rather than halfway through a run."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(bytes(PROBE_BYTES))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise RunError(f"cannot write into {folder}: {error.strerror or error}") from None


@contextmanager
def exclusive_dir(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``flock`` on the folder itself: no lock file), or
    raise RunError when another process holds it. The OS drops it when the process dies."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = os.open(folder, os.O_RDONLY)
    except OSError as error:
        raise RunError(f"cannot write into {folder}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"{folder} is in use by another dropout-lab process; wait for it to "
                           f"end (or stop it), then resume") from None
        yield
    finally:
        os.close(handle)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda out: out.write(text.encode()))


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_figure(figure, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically and close it; returns ``path``."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write(path, lambda out: out.write(buffer.getbuffer()))
    return Path(path)


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)

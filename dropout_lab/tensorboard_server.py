"""``dropout-lab tensorboard [DIR]``: TensorBoard on 127.0.0.1 over a run or sweep folder.

A sweep folder holds one TensorBoard run per job (run_log.py), named by its job folder
(``007_p=0.2-0.5_wd=1e-4``, job_names.py), so the scalars, the custom "train vs test" charts
and the HParams table compare every job; the sweep's experiment (which hparams, their domains,
the columns shown at first: hparams.py) is an event file at the sweep folder's root, the run
TensorBoard lists as ".". A single run declares its own.
"""

import threading
from pathlib import Path
from typing import Callable, Optional

from dropout_lab.errors import ConfigError, RunError

HOST = "127.0.0.1"


def start(logdir: Path, port: Optional[int] = None) -> str:
    """Start TensorBoard in this process (a daemon thread); returns its URL.

    ``port`` None or 0: a free port the OS picks. Only loopback: nothing is served to the network.
    """
    from tensorboard import program

    logdir = Path(logdir)
    if not logdir.is_dir():
        raise ConfigError(f"{logdir} is not a directory; give a run or sweep folder")
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"--port has to be between 0 and 65535, not {port}")
    board = program.TensorBoard()
    board.configure(logdir=str(logdir.resolve()), host=HOST, port=port or 0,
                    reload_multifile=True,  # a resumed run adds an event file to its folder
                    load_fast="false")  # the pure-Python reader: always there, no advisory note
    try:
        return board.launch()
    except program.TensorBoardServerException as error:
        raise RunError(f"TensorBoard could not start: {error.msg}") from None


def serve(logdir: Path, port: Optional[int] = None, announce: Callable[[str], None] = print) -> None:
    """Start TensorBoard, ``announce`` its URL, and serve until Ctrl-C (or SIGTERM)."""
    announce(start(logdir, port))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass

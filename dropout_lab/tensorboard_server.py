"""``dropout-lab tensorboard [DIR]``: TensorBoard on 127.0.0.1 over a run, a sweep, several
sweeps, an exercise folder or all of outputs/.

The scalars and the custom "train vs test" charts are TensorBoard's own: one TensorBoard run per
run folder. The HParams dashboard is computed for the folder served: TensorBoard takes the
experiment (which hparams, their domains, the columns checked at first) from the first
declaration it happens to find, and a folder of several sweeps holds one per sweep and per single
run. So its hparams plugin here reads, instead of the declarations in the event files, the
experiment and sessions that hparams.folder_dashboard computes from every run's summary.json
under DIR: every setting that differs anywhere under DIR checked (the dashboard checks five at
most), the runs that differ only by seed one row. Nothing is written into DIR; plain
``tensorboard --logdir`` still shows the declarations the runs and sweeps wrote themselves.
"""

import threading
from pathlib import Path
from typing import Callable, Dict, Optional

from dropout_lab.errors import ConfigError, RunError

HOST = "127.0.0.1"


def start(logdir: Path, port: Optional[int] = None) -> str:
    """Start TensorBoard in this process (a daemon thread); returns its URL.

    ``port`` None or 0: a free port the OS picks. Only loopback: nothing is served to the network.
    """
    from tensorboard import default, program
    from tensorboard.plugins.hparams.hparams_plugin import HParamsPlugin

    logdir = Path(logdir)
    if not logdir.is_dir():
        raise ConfigError(f"{logdir} is not a directory; give a run or sweep folder")
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"--port has to be between 0 and 65535, not {port}")
    logdir = logdir.resolve()
    plugins = [folder_hparams_plugin(logdir) if plugin is HParamsPlugin else plugin
               for plugin in default.get_plugins()]
    board = program.TensorBoard(plugins=plugins)
    board.configure(logdir=str(logdir), host=HOST, port=port or 0,
                    reload_multifile=True,  # a resumed run adds an event file to its folder
                    load_fast="false")  # the pure-Python reader: always there, no advisory note
    try:
        return board.launch()
    except program.TensorBoardServerException as error:
        raise RunError(f"TensorBoard could not start: {error.msg}") from None


def folder_hparams_plugin(logdir: Path):
    """TensorBoard's HParams plugin, reading the dashboard computed for ``logdir``."""
    from tensorboard.plugins.hparams import backend_context, hparams_plugin

    dashboard = FolderDashboard(logdir)

    class FolderContext(backend_context.Context):
        def hparams_metadata(self, ctx, experiment_id, run_tag_filter=None):
            return dashboard.metadata(run_tag_filter)

    class FolderHParamsPlugin(hparams_plugin.HParamsPlugin):
        def __init__(self, context):
            super().__init__(context)
            self._context = FolderContext(context)

    return FolderHParamsPlugin


class FolderDashboard:
    """hparams.folder_dashboard of a folder, computed again when a summary.json has changed
    (a run has ended, a sweep has grown): the dashboard asks several times per page."""

    def __init__(self, logdir: Path):
        self.logdir = Path(logdir)
        self.lock = threading.Lock()
        self.stamp, self.contents = None, {}

    def metadata(self, run_tag_filter=None) -> Dict[str, Dict[str, bytes]]:
        """run -> tag -> plugin content, as TensorBoard's Context.hparams_metadata returns it."""
        from dropout_lab.hparams import folder_dashboard, folder_sessions
        from dropout_lab.run_folder import SUMMARY

        stamp = sorted((str(path), path.stat().st_mtime_ns) for path in self.logdir.rglob(SUMMARY))
        with self.lock:
            if stamp != self.stamp:
                self.contents = folder_dashboard(folder_sessions(self.logdir), self.logdir.name)
                self.stamp = stamp
            contents = self.contents
        runs = getattr(run_tag_filter, "runs", None)
        tags = getattr(run_tag_filter, "tags", None)
        return {run: {tag: content for tag, content in tag_to_content.items()
                      if tags is None or tag in tags}
                for run, tag_to_content in contents.items() if runs is None or run in runs}


def serve(logdir: Path, port: Optional[int] = None, announce: Callable[[str], None] = print) -> None:
    """Start TensorBoard, ``announce`` its URL, and serve until Ctrl-C (or SIGTERM)."""
    announce(start(logdir, port))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass

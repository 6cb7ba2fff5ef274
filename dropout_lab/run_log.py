"""Writing a run while it trains: TensorBoard events and summary.json (the folder's layout and
the summary's reader are run_folder.py's, the checkpoint checkpoint.py's).

TensorBoard tags (step = epoch, starting at 1):
    loss/train, accuracy/train (measured during the epoch, dropout on: the textbook's figures),
    loss/train_eval, accuracy/train_eval (a fixed training subset in eval mode), loss/test,
    accuracy/test, accuracy/gap (train_eval - test: the clean gap), accuracy/gap_dropout_on
    (train - test), time/epoch_seconds, optim/lr (the learning rate at the epoch's first step);
    with data.validation also loss/val and accuracy/val (the held-out training images, eval
    mode). At the end steady/accuracy_test (the mean test accuracy of the last
    trainer.steady_epochs epochs; steady/accuracy_val likewise), best/accuracy_test and the
    run's hparams. With logging.activation_stats: activations/layer{k}_var_before_noise,
    ..._var_after_noise and ..._mean_square_before_noise per hidden layer k (see
    activations.py). The hparams, and which of them the HParams dashboard shows, are hparams.py's.
"""

import time
from pathlib import Path
from typing import List, Optional

from dropout_lab.disk import remove_temp_files
from dropout_lab.keys import epoch_tags, steady_tags
from dropout_lab.run_folder import (EVENTS_GLOB, STEADY_EPOCHS, SUMMARY, Status, best,
                                    has_summary, read_summary, steady, write_summary)

ACTIVATION_KEY_PREFIX = "layer"  # history keys layer{k}_... -> tags activations/layer{k}_...
EPOCH_TAGS = epoch_tags()  # history key -> TensorBoard tag (the registry's, keys.py)
# Summary metrics: the steady test accuracy leads (the last epoch alone is noisy at lr 0.5);
# the steady validation accuracy is what a search tunes on (sweep/job.py's objective).
STEADY_KEYS = ("test_accuracy", "test_loss", "train_eval_accuracy", "gap", "val_accuracy",
               "val_loss")
BEST_TAG = "best/accuracy_test"
STEADY_TAGS = steady_tags()  # written at the end of a run (val: data.validation > 0)
CUSTOM_SCALARS = {
    "dropout-lab": {
        "accuracy (train vs test)": ["Multiline", ["accuracy/train", "accuracy/train_eval",
                                                    "accuracy/test"]],
        "loss (train vs test)": ["Multiline", ["loss/train", "loss/train_eval", "loss/test"]],
        "generalisation gap": ["Multiline", ["accuracy/gap", "accuracy/gap_dropout_on"]],
        "learning rate": ["Multiline", ["optim/lr"]],
    }
}
# With data.validation: the validation curve on the accuracy and loss charts too.
VALIDATION_CHARTS = {"accuracy (train vs test)": "accuracy/val", "loss (train vs test)": "loss/val"}


def custom_scalars(validation: bool) -> dict:
    """The custom scalars layout of a run (with or without a validation split)."""
    if not validation:
        return CUSTOM_SCALARS
    return {category: {title.replace("train vs test", "train vs val vs test"):
                       [kind, tags + [VALIDATION_CHARTS[title]]]
                       if title in VALIDATION_CHARTS else [kind, tags]
                       for title, (kind, tags) in charts.items()}
            for category, charts in CUSTOM_SCALARS.items()}


class RunLog:
    """Writes a run's TensorBoard events and summary; one per run (or resume)."""

    def __init__(self, run_dir: Path, config: dict, start_epoch: int = 1,
                 history: Optional[List[dict]] = None, tensorboard: bool = True,
                 steady_epochs: int = STEADY_EPOCHS, device: Optional[dict] = None,
                 in_sweep: bool = False):
        self.run_dir = Path(run_dir)
        self.config = config
        self.device = device  # device.describe_device's: what the run computes on
        self.in_sweep = in_sweep  # a sweep's job: the sweep declares the HParams experiment
        self.steady_epochs = steady_epochs
        self.history = list(history or [])
        self.started = time.time()
        self.writer = None
        remove_temp_files(self.run_dir / SUMMARY)  # left by a process killed while writing it
        self.write_summary(Status.RUNNING)  # fails early, before training, if the folder is unwritable
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            if start_epoch == 1:  # starting over: an earlier attempt's events are void
                for old in self.run_dir.glob(EVENTS_GLOB):
                    old.unlink()
            # purge_step hides any events a killed run logged past its last checkpoint.
            self.writer = SummaryWriter(str(self.run_dir), purge_step=start_epoch)
            if start_epoch == 1:
                validation = bool(config.get("data", {}).get("validation"))
                self.writer.add_custom_scalars(custom_scalars(validation))

    def log_epoch(self, metrics: dict) -> None:
        self.history.append(metrics)
        if self.writer:
            for key, tag in EPOCH_TAGS.items():
                if key in metrics:  # train_eval and gap: only with trainer.eval_train_subset
                    self.writer.add_scalar(tag, metrics[key], metrics["epoch"])
            for key, value in metrics.items():  # logging.activation_stats (activations.py)
                if key.startswith(ACTIVATION_KEY_PREFIX):
                    self.writer.add_scalar(f"activations/{key}", value, metrics["epoch"])
            self.writer.flush()

    def write_summary(self, status: Status, error: Optional[str] = None) -> dict:
        previous = read_summary(self.run_dir) if has_summary(self.run_dir) else {}
        elapsed = previous.get("timings", {}).get("earlier_seconds", 0.0)
        summary = {
            "status": Status(status).value,
            "error": error,
            "run_dir": str(self.run_dir),
            "config": self.config,
            "device": self.device,
            "final": self.history[-1] if self.history else {},
            "steady": self.steady_metrics(),
            "best": best(self.history),
            "epochs_done": len(self.history),
            "timings": {
                "earlier_seconds": elapsed,
                "train_seconds": sum(row["epoch_seconds"] for row in self.history),
                "wall_seconds": elapsed + time.time() - self.started,
            },
            "history": self.history,
        }
        if status != Status.RUNNING:
            summary["timings"]["earlier_seconds"] = summary["timings"]["wall_seconds"]
        write_summary(self.run_dir, summary)
        return summary

    def steady_metrics(self) -> dict:
        """The mean of the last ``steady_epochs`` epochs of each STEADY_KEYS metric."""
        if not self.history:
            return {}
        values = {key: steady(self.history, key, self.steady_epochs) for key in STEADY_KEYS}
        return {**{key: value for key, value in values.items() if value is not None},
                "epochs": min(self.steady_epochs, len(self.history))}

    def close(self, status: Status, error: Optional[str] = None) -> dict:
        """Write the final summary and, once the run has ended for good, the hparams (in this
        same run); flush and close."""
        summary = self.write_summary(status, error)
        if self.writer:
            # TensorBoard keeps the first hparams of a run: an interrupted or failed run, which
            # may yet be resumed, writes none, so the resumed run's are the ones shown.
            if Status(status).final:
                self._write_hparams(status, summary)
            self.writer.close()
        return summary

    def _write_hparams(self, status: Status, summary: dict) -> None:
        """The run's hparams and metrics for the HParams dashboard (hparams.py): the
        experiment (a single run; a sweep declares its own), the session start and end."""
        from dropout_lab.hparams import run_summaries

        if summary["best"]:
            last = summary["final"]["epoch"]
            self.writer.add_scalar(BEST_TAG, summary["best"]["test_accuracy"], last)
            for key, tag in STEADY_TAGS.items():
                if key in summary["steady"]:
                    self.writer.add_scalar(tag, summary["steady"][key], last)
        # Into this run's own file: SummaryWriter.add_hparams would open a second, empty run.
        for item in run_summaries(self.config, Status(status).value, self.started,
                                  with_experiment=not self.in_sweep):
            self.writer.file_writer.add_summary(item)
        self.writer.flush()


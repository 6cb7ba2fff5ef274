"""A run's checkpoint, owned here: what ``checkpoint.pt`` holds (``Checkpoint``), how it is taken
from the training objects and put back into them, written (atomically: a kill or a full disk
leaves the previous one whole), read (``weights_only``: a checkpoint is data and never runs code
when loaded), verified against the config a resume brings, and removed. Its file name is
run_folder.py's; train.py saves one after every epoch, ``--resume`` and a sweep's rerun continue
from it, ``evaluate`` and the exercises read its weights."""

import io
from dataclasses import dataclass, fields
from pathlib import Path
from typing import List, Optional

import torch

from dropout_lab.config import Config, config_dict, flatten_config, with_schema_defaults
from dropout_lab.device import rng_state, set_rng_state
from dropout_lab.disk import atomic_write, remove_temp_files
from dropout_lab.errors import ConfigError, RunError
from dropout_lab.keys import resume_changes
from dropout_lab.run_folder import CHECKPOINT, read_summary

@dataclass
class TrainingState:
    """The live objects of a run that a checkpoint is taken from and restored into."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Optional[object]  # optim.build_scheduler's; None: a constant learning rate
    generator: torch.Generator  # the shuffle's (on the CPU)
    device: torch.device  # the run's: whose GPU generator the RNG state holds


@dataclass
class Checkpoint:
    """What ``checkpoint.pt`` holds after an epoch: all a resume needs to continue bit for bit."""

    model: dict  # the model's state_dict
    optimizer: dict  # the optimiser's state_dict (Adam's moments, the current lr)
    rng: dict  # device.rng_state's: torch's CPU generator, the shuffle's, the run's GPU's
    epoch: int  # the last epoch done
    history: List[dict]  # every epoch's metrics so far, as summary.json holds them
    config: dict  # the run's resolved config: what a resume is verified against
    scheduler: Optional[dict] = None  # the learning-rate scheduler's position; None: constant

    @classmethod
    def take(cls, state: TrainingState, epoch: int, history: List[dict],
             config: dict) -> "Checkpoint":
        scheduler = state.scheduler
        return cls(model=state.model.state_dict(), optimizer=state.optimizer.state_dict(),
                   rng=rng_state(state.device, state.generator), epoch=epoch,
                   history=list(history), config=config,
                   scheduler=None if scheduler is None else scheduler.state_dict())

    def restore(self, state: TrainingState, run_dir: Path) -> None:
        """Put the weights, the optimiser's and scheduler's state and the RNG states back into
        ``state``'s objects (built from the same config; ConfigError when they do not fit)."""
        try:
            state.model.load_state_dict(self.model)
            state.optimizer.load_state_dict(self.optimizer)
        except (RuntimeError, ValueError, KeyError) as error:
            detail = "; ".join(line.strip() for line in str(error).strip().splitlines()[:2])
            raise ConfigError(f"the config does not fit the checkpoint in {run_dir}: "
                              f"{detail}") from None
        if state.scheduler is not None:  # after the optimiser, whose lr the scheduler holds
            if self.scheduler is None:
                raise ConfigError(f"the checkpoint in {run_dir} holds no learning-rate schedule; "
                                  f"resume it with the schedule it was started with")
            state.scheduler.load_state_dict(self.scheduler)
        set_rng_state(self.rng, state.device, state.generator)


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT


def has_checkpoint(run_dir: Path) -> bool:
    return checkpoint_path(run_dir).is_file()


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` atomically (disk.atomic_write): serialised first, so nothing is
    written unless all of it can be; RunError naming the file when the disk refuses it."""
    buffer = io.BytesIO()
    torch.save({field.name: getattr(checkpoint, field.name) for field in fields(checkpoint)},
               buffer)
    atomic_write(checkpoint_path(run_dir), lambda out: out.write(buffer.getbuffer()))


def read_checkpoint(run_dir: Path) -> Checkpoint:
    """The run's checkpoint, on the CPU; RunError when there is none, or it cannot be read: a
    damaged file, or one that would run code when unpickled (refused, never executed)."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise RunError(f"{run_dir} has no {CHECKPOINT}")
    try:
        return Checkpoint(**torch.load(path, weights_only=True, map_location="cpu"))
    except Exception as error:
        raise RunError(f"{path} cannot be read ({type(error).__name__}); start the run anew") from None


def verify_checkpoint(checkpoint: Checkpoint, cfg: Config, run_dir: Path) -> None:
    """ConfigError, one line naming every offending key, when ``cfg`` changes what an epoch of
    the checkpoint's run computes (the registry's rule, keys.resume_changes: the same for a
    sweep run again into its folders). Keys added to the schema since the run was saved count as
    their defaults."""
    saved = flatten_config(with_schema_defaults(checkpoint.config))
    wanted = flatten_config(config_dict(cfg))
    changed = [f"{key}={wanted.get(key)} (the run has {saved[key]})"
               for key in resume_changes(saved, wanted)]
    if changed:
        raise ConfigError(f"cannot resume {run_dir} with {', '.join(changed)}: a resumed run "
                          f"continues the same training (only trainer.epochs, device, threads, "
                          f"data paths and logging may change); start a new run instead")


def resumable_checkpoint(cfg: Config, run_dir: Path) -> Optional[Checkpoint]:
    """The checkpoint a resume of the run in ``run_dir`` with ``cfg`` continues from, verified
    (ConfigError when ``cfg`` changes what an epoch computes); None when the run died before its
    first epoch. It writes nothing: call it before anything else does, so that a refused resume
    leaves the run untouched."""
    summary = read_summary(run_dir)  # RunError when run_dir is not a run
    if not has_checkpoint(run_dir):
        if summary.get("epochs_done"):
            raise RunError(f"{run_dir} has {summary['epochs_done']} epochs but no {CHECKPOINT} to "
                           f"resume from (trained with logging.checkpoint=false?); start a new run")
        return None
    checkpoint = read_checkpoint(run_dir)
    verify_checkpoint(checkpoint, cfg, run_dir)
    return checkpoint


def remove_unfinished_saves(run_dir: Path) -> None:
    """Delete the temp files of a save that a killed process left (its checkpoint is whole)."""
    remove_temp_files(checkpoint_path(run_dir))


def remove_checkpoint(run_dir: Path) -> None:
    """Delete the run's checkpoint (and any unfinished save): its next start begins anew."""
    checkpoint_path(run_dir).unlink(missing_ok=True)
    remove_unfinished_saves(run_dir)

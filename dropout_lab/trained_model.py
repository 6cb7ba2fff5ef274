"""Trained runs rebuilt from their config and checkpoint (used by evaluate and the exercises).
torch is imported inside the functions: importing the exercises stays light."""

from contextlib import contextmanager

from dropout_lab.run_folder import RunRecord


def run_config(run: RunRecord):
    """The run's typed Config, from the resolved config its summary.json holds."""
    from omegaconf import OmegaConf

    from dropout_lab.hydra_runner import typed_config
    from dropout_lab.config import Config

    return typed_config(OmegaConf.merge(OmegaConf.structured(Config), run.config))


def trained_model(run: RunRecord):
    """The run's model with its last checkpoint's weights, on the CPU, in eval mode. Evaluate
    it in the run's precision (``run_config(run).trainer.precision`` through device.autocast):
    a bf16 run is refused (ConfigError) on a CPU without native bf16, as training refuses it."""
    import torch

    from dropout_lab.device import check_precision
    from dropout_lab.model import build_model
    from dropout_lab.checkpoint import read_checkpoint

    config = run_config(run)
    check_precision(config.trainer.precision, torch.device("cpu"))
    model = build_model(config.model)
    model.load_state_dict(read_checkpoint(run.run_dir).model)
    return model.eval()


def test_split(run: RunRecord):
    """The test split the run was evaluated on (its data.test_subset), on the CPU."""
    import torch

    from dropout_lab.data import load_fashion_mnist

    return load_fashion_mnist(run_config(run).data, torch.device("cpu")).test


def test_images(run: RunRecord, count: int):
    """The first ``count`` test images of the run's test split: (count, 784)."""
    return test_split(run).images[:count]


@contextmanager
def one_thread():
    """torch on one thread for the measurements, as the sweep's parallel runs train: two threads
    fighting other processes for two cores are many times slower, and would skew timings."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

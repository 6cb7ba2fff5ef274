"""Test-only Hydra callback (tests/sweep/test_workers.py): while a sweep job runs, its process may
grow its address space by at most ``extra_mb`` MiB (RLIMIT_AS), so that a job that needs more
really runs out of memory. Given as overrides (``memory_limit_overrides``); the sweep's worker
processes import it from tests/ (PYTHONPATH)."""

import resource
from pathlib import Path

from hydra.experimental.callback import Callback

TESTS = Path(__file__).parent


def memory_limit_overrides(extra_mb: int) -> list:
    key = "+hydra.callbacks.memory_limit"
    return [f"{key}._target_=memory_limit.MemoryLimit", f"{key}.extra_mb={extra_mb}"]


class MemoryLimit(Callback):
    def __init__(self, extra_mb: int) -> None:
        self.extra_mb = extra_mb
        self.previous = None

    def on_job_start(self, config, **kwargs) -> None:
        with open("/proc/self/statm") as statm:  # its first field: the address space, in pages
            address_space = int(statm.read().split()[0]) * resource.getpagesize()
        self.previous = resource.getrlimit(resource.RLIMIT_AS)
        limit = address_space + (self.extra_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, self.previous[1]))

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if self.previous is not None:  # a worker runs other jobs after this one
            resource.setrlimit(resource.RLIMIT_AS, self.previous)

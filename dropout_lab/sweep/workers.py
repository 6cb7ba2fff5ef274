"""The sweep's local worker processes (``--jobs N``, ``--launcher joblib``): N long-lived
processes, each importing torch once and then running jobs one after another, and one process
that hands them the jobs and watches them (the sweep's own).

Why not joblib's pool, which Hydra's joblib launcher uses? When one of its (loky) workers dies,
from the OOM killer's SIGKILL or a segfault, loky marks the whole pool broken and SIGKILLs the
other workers: the jobs beside the dead one die with it, the jobs not started never run, and
the launcher raises ``TerminatedWorkerError``, which names neither the job nor (except in its
message text) the exit code. Here every worker is a process of its own: a worker that dies takes
only its own job with it, ``Process.exitcode`` says how it died (-9: SIGKILL), the pool knows
which job that worker was running, and a new worker takes over the jobs still to run.

The messages between the sweep and a worker are cloudpickled (Hydra's task, config and
context, as joblib sends them) over a pipe: ``(function, args)`` in, ``(DONE, value)`` or
``(INTERRUPTED, None)`` out. A worker ends when the sweep closes its end of the pipe.
"""

import atexit
import os
import signal
import traceback
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Deque, Dict, List, Optional

from joblib.externals.loky.backend.context import get_context

DONE, INTERRUPTED, RAISED = "done", "interrupted", "raised"
JOIN_TIMEOUT_S = 10.0  # a worker whose pipe closed has ended or is ending: at most this long


@dataclass
class Task:
    """One job for a worker: its index (Hydra's job number) and the cloudpickled call."""

    index: int
    message: bytes
    deaths: int = 0  # how many workers died running it


RETRY = object()  # what ``on_lost`` returns to have a task run once more


def death_cause(exitcode: Optional[int]) -> str:
    """How a worker died, for a job's summary: ``worker killed by SIGKILL (out of memory?)``.

    SIGKILL is what the kernel's OOM killer sends (and ``kill -9``); the cause cannot be told
    apart from the exit code, hence the question mark."""
    if exitcode is None:
        return "worker lost"
    if exitcode >= 0:
        return f"worker exited with code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    if -exitcode == signal.SIGKILL:
        return f"worker killed by {name} (out of memory?)"
    if -exitcode in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT):
        return f"worker crashed ({name})"
    return f"worker killed by {name}"


class Worker:
    """One worker process and the sweep's end of its pipe; ``task`` is what it runs now."""

    def __init__(self, context, number: int):
        self.connection, child_end = context.Pipe()
        self.process = context.Process(target=serve, args=(child_end,), daemon=False,
                                       name=f"dropout-lab-worker-{number}")
        self.process.start()
        child_end.close()  # the worker's end lives in the worker: EOF there when we close ours
        self.task: Optional[Task] = None

    def send(self, task: Task) -> bool:
        """Hand the worker ``task``; False when it has died since its last job."""
        if not self.process.is_alive():
            return False
        try:
            self.connection.send_bytes(task.message)
        except OSError:  # its end of the pipe has gone: it died while idle
            return False
        self.task = task
        return True

    def reply(self) -> Optional[tuple]:
        """The worker's reply to its task, or None when it died without one."""
        import cloudpickle

        try:
            if self.connection.poll():  # a reply sent just before it died still counts
                return cloudpickle.loads(self.connection.recv_bytes())
        except (EOFError, OSError):
            pass
        return None

    def end(self, kill: bool = False) -> Optional[int]:
        """Close our end of the pipe, kill the worker with ``kill``, and wait for it to end;
        its exit code (None if it is still running after JOIN_TIMEOUT_S)."""
        self.connection.close()
        if kill:
            self.kill()
        self.process.join(JOIN_TIMEOUT_S)
        return self.process.exitcode

    def kill(self) -> None:
        if self.process.is_alive():  # (loky's Process has no kill())
            with suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)


class WorkerPool:
    """``size`` worker processes, started at once (each imports the training code while the
    sweep is planned); a worker that dies is replaced when there is work for it."""

    def __init__(self, size: int):
        self.size = size
        # loky's processes: a fresh interpreter (not a fork of this one, its threads and torch's
        # thread pools) that, unlike multiprocessing's "spawn", does not run the main script again
        self.context = get_context("loky")
        self.started = 0
        self.workers: List[Worker] = []
        self._fill()

    def _fill(self) -> None:
        while len(self.workers) < self.size:
            self.started += 1
            self.workers.append(Worker(self.context, self.started))

    def run(self, tasks: List[Task], on_lost: Callable[[Task, Optional[int]], Any]) -> Dict[int, Any]:
        """Run ``tasks`` on the workers; the value each returned, by task index.

        A task whose worker died goes to ``on_lost(task, exitcode)``, which returns the task's
        value, or RETRY to have it run again (first in the queue, on a new worker). A worker's
        KeyboardInterrupt (its job was stopped by Ctrl-C or SIGTERM) stops the sweep.
        """
        queue: Deque[Task] = deque(tasks)
        values: Dict[int, Any] = {}
        try:
            while queue or any(worker.task for worker in self.workers):
                self._dispatch(queue)
                busy = [worker for worker in self.workers if worker.task is not None]
                wait([w.connection for w in busy] + [w.process.sentinel for w in busy])
                for worker in busy:
                    if worker.process.is_alive() and not worker.connection.poll():
                        continue  # still working
                    task, reply = worker.task, worker.reply()
                    worker.task = None
                    if reply is None:  # it died running the task
                        self.workers.remove(worker)
                        value = on_lost(task, worker.end())
                        if value is RETRY:
                            task.deaths += 1
                            queue.appendleft(task)
                        else:
                            values[task.index] = value
                    elif reply[0] == DONE:
                        values[task.index] = reply[1]
                    elif reply[0] == INTERRUPTED:
                        raise KeyboardInterrupt
                    else:  # a bug outside the job's own failure handling: crash loudly
                        raise RuntimeError(f"job #{task.index} raised in its worker:\n{reply[1]}")
        except KeyboardInterrupt:
            self.close(wait=False)  # each worker stops after its job has saved its checkpoint
            raise
        return values

    def _dispatch(self, queue: Deque[Task]) -> None:
        """Give queued tasks to idle workers; replace workers that have died."""
        while queue:
            idle = [worker for worker in self.workers if worker.task is None]
            if not idle:
                if len(self.workers) < self.size:
                    self._fill()
                    continue
                return
            if idle[0].send(queue[0]):
                queue.popleft()
            else:  # it died while idle (killed between jobs): its replacement takes the task
                self.workers.remove(idle[0])
                idle[0].end()
                self._fill()

    def close(self, wait: bool = True) -> None:
        """Stop the workers. Idle ones are killed (a torch process takes seconds to wind down,
        and they hold nothing); with ``wait`` all are, and waited for (at the end of a sweep
        they are all idle). Without it, a worker with a job only has its pipe closed: it ends
        once its job has saved its checkpoint (Ctrl-C), and multiprocessing waits for it at exit."""
        for worker in self.workers:
            if wait:
                worker.end(kill=True)
            else:
                worker.connection.close()
                if worker.task is None:
                    worker.kill()
        self.workers = []


_POOL: Optional[WorkerPool] = None  # the sweep's workers: started early, found by the launcher


def worker_pool(size: int) -> WorkerPool:
    """The running pool of ``size`` workers, started now if there is none of that size."""
    global _POOL
    if _POOL is None or _POOL.size != size:
        stop_pool()
        _POOL = WorkerPool(size)
    return _POOL


def stop_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.close()
        _POOL = None


def _close_at_exit() -> None:
    """At an exit that did not stop the workers (an error) let each end after its job."""
    if _POOL is not None:
        _POOL.close(wait=False)


atexit.register(_close_at_exit)  # runs before multiprocessing's own exit handler joins them


# --- in the worker process -------------------------------------------------------------------

def serve(connection) -> None:
    """A worker's life: import what every job needs, then run what it is sent until the
    sweep closes its end of the pipe. Ctrl-C reaches it too (same process group):
    a job saves its checkpoint and reports INTERRUPTED; an idle worker just ends."""
    import cloudpickle

    try:
        import_training()
        while True:
            function, args = cloudpickle.loads(connection.recv_bytes())
            try:
                reply = (DONE, function(*args))
            except KeyboardInterrupt:
                reply = (INTERRUPTED, None)
            except BaseException:  # noqa: B902  (SystemExit too: the sweep decides)
                reply = (RAISED, traceback.format_exc())
            connection.send_bytes(cloudpickle.dumps(reply))
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the sweep has ended or was interrupted


def import_training() -> int:
    """Run in a worker: import what every job needs (torch, the training core, TensorBoard)."""
    import torch
    import torch.utils.tensorboard  # noqa: F401  (RunLog's SummaryWriter)

    import dropout_lab.train  # noqa: F401

    # A process's first torch optimizer imports torch._dynamo (hundreds of modules).
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return os.getpid()

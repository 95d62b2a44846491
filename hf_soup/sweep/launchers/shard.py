"""The job side of `--launcher submitit`: what one array job runs, and how it survives preemption.

A shard job is a `ShardJob` pickled by submitit; on the node, submitit unpickles it and calls it.
It runs `python -m hf_soup.sweep <the user's flags> --shard i/n` in a child process (under
`accelerate launch` when the shard has more than one GPU), so the job's log is the sweep's own
output and every rule of the sweep holds unchanged: finished points are skipped, a point is
trained by one job at a time (its lock), ingredients appear complete or not at all.

Preemption and time limits: SLURM signals the job (`--signal USR2@90`, set by submitit) before
it stops it. submitit then calls `checkpoint()`, which stops the sweep and hands back a fresh
`ShardJob` for the same shard; submitit requeues the job with it (`scontrol requeue`; locally,
exit 144 and the local controller restarts it). The requeued job reruns the same command: the
sweep skips finished points and resumes the interrupted one from its newest complete checkpoint
(with `--save_strategy steps`; without it the interrupted point restarts).

This module imports only the standard library, submitit and `hf_soup.atomic`: it is what the
job process imports to unpickle its work, before the sweep child imports torch.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import submitit

from hf_soup.atomic import write_json_atomic
from hf_soup.sweep.launchers import masked

STOP_TIMEOUT_S = 60.0  # how long a stopped sweep may take to exit before it is killed
POLL_S = 0.5


class ShardFailed(RuntimeError):
    """The shard's sweep exited with an error (its own `error:` line is the last one of the job log)."""


class ShardJob(submitit.helpers.Checkpointable):
    """One shard of a sweep as a submitit job. `status_file` records where and as which attempt it runs."""

    def __init__(
        self, sweep_argv: list[str], shard: str, gpus: int, cwd: str, status_file: str, attempt: int = 1
    ) -> None:
        self.sweep_argv = list(sweep_argv)
        self.shard = shard
        self.gpus = gpus
        self.cwd = cwd
        self.status_file = status_file
        self.attempt = attempt
        self._child: subprocess.Popen | None = None

    def command(self, port: int | None = None) -> list[str]:
        """The shard's sweep, as run on the node (`accelerate launch` for more than one GPU)."""
        sweep = ["-m", "hf_soup.sweep", *self.sweep_argv, "--shard", self.shard]
        if self.gpus <= 1:
            return [sys.executable, *sweep]
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(self.gpus)]
        launch += ["--num_machines", "1", "--main_process_port", str(port or 29500)]
        return [*launch, *sweep]

    def __call__(self) -> dict[str, Any]:
        # Two shards may share a node: each picks its own rendezvous port.
        port = _free_port() if self.gpus > 1 else None
        print(f"shard {self.shard}, attempt {self.attempt}: {' '.join(masked(self.command(port)))}", flush=True)
        self._child = subprocess.Popen(self.command(port), cwd=self.cwd, preexec_fn=_stop_with_parent)
        self._write_status()
        try:
            # poll(), not wait(): wait() holds a lock that checkpoint(), run from a signal handler
            # in this very thread, would need to stop the child.
            while (code := self._child.poll()) is None:
                time.sleep(POLL_S)
        finally:
            self._stop_child()
        if code != 0:
            raise ShardFailed(f"shard {self.shard}: the sweep exited with status {code} (its error is in this log)")
        return {"shard": self.shard, "attempt": self.attempt}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on preemption or time-out: stop the sweep; requeue a fresh job for this shard.

        Nothing else needs saving: the sweep's own files (ingredients, `.work/<run>/checkpoint-*`)
        are the state, and the requeued job resumes from them.
        """
        self._stop_child()
        print(f"shard {self.shard}: preempted or out of time during attempt {self.attempt}; requeued", flush=True)
        fresh = ShardJob(self.sweep_argv, self.shard, self.gpus, self.cwd, self.status_file, self.attempt + 1)
        return submitit.helpers.DelayedSubmission(fresh)

    def _stop_child(self) -> None:
        child = self._child
        if child is None or child.poll() is not None:
            return
        child.terminate()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGCONT)  # a stopped (SIGSTOP) child handles SIGTERM only once continued
        try:
            child.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=STOP_TIMEOUT_S)

    def _write_status(self) -> None:
        environment = submitit.JobEnvironment() if os.environ.get("SUBMITIT_EXECUTOR") else None
        write_json_atomic(
            Path(self.status_file),
            {
                "shard": self.shard,
                "attempt": self.attempt,
                "job_id": environment.job_id if environment else None,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "sweep_pid": self._child.pid if self._child else None,
                "command": masked(self._child.args) if self._child else None,
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            },
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_child"] = None  # a process handle does not travel; a requeued job starts its own
        return state


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop_with_parent() -> None:
    """In the sweep child, before exec: get SIGTERM if the job process dies (Linux), so a killed job
    never leaves a sweep training behind it on the node."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

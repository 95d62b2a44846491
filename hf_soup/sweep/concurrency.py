"""Train several grid points at the same time on one device: a pool of worker processes.

    python scripts/sweep.py --config configs/rte.yaml --concurrent 4      # 4 points at once on the GPU
    python scripts/sweep.py --config configs/rte.yaml --concurrent auto   # as many as fit (measured)
    python -m pytest tests/test_concurrency.py                            # CPU, tiny BERT

Why: fine-tuning a small encoder (MiniLM, BERT-base) at batch 32 keeps a modern GPU a few percent
busy; each step is bound by Python and kernel-launch overhead, not by the device. K processes
sharing the GPU fill each other's idle time, so a grid finishes up to K times sooner. On a CPU the
cores are already busy: there, concurrency only trades threads per run for runs.

Design (every choice keeps work safe and results identical to the sequential sweep):
  * the parent plans the sweep and does the once-per-sweep work (tokenisation cache; LP-FT /
    warm start in `.shared/`) before any worker starts, then hands each worker the planned
    context; every worker runs the same `sweep.loop.train_unclaimed_point` (lock, `run_grid_point`,
    atomic ingredient folder) as the sequential loop, so an ingredient is the same whoever trains
    it: bit-identical on CPU at equal thread counts, as reproducible as GPU training itself on GPUs;
  * workers are forked from a fork server that imported torch and transformers once and never
    touched CUDA (a CUDA context does not survive a fork; plain spawn would re-import everything
    per worker, seconds each); they take one point at a time over a pipe and write their output
    to `<output_dir>/.logs/<run_id>.log`; the parent keeps the grid progress bar, its ETA and the
    leaderboard;
  * a point that raises, or whose worker dies (segfault, OOM killer), fails alone: one line names
    it and its log, a fresh worker replaces the old one and the grid goes on; the exit status is 1
    when any point failed, and a rerun of the same command retries exactly those;
  * Ctrl-C / SIGTERM: the parent stops every worker with SIGTERM, which each turns into SystemExit
    (temporary folders removed, locks released); a worker whose parent was SIGKILLed stops itself
    the same way. A rerun skips finished points and resumes interrupted ones (from their newest
    checkpoint when `--save_strategy` writes them).

How many workers with `--concurrent auto`:
  * CUDA: the first point trains alone as a probe; from its peak reserved memory `peak`, a
    per-process CUDA context allowance `ctx` (1 GiB) and the device's free memory `free`,
    K = min(points left, 8, 1 + floor((0.9 * free - peak) / (peak + ctx))) (the probe worker
    already holds its context, so it needs only `peak` again);
  * CPU: K = max(1, cores // 4): each worker gets cores // K threads, and a worker with fewer than
    about four threads trains too slowly for a second run to pay; so `auto` is 1 below 8 cores.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_soup.errors import SoupError
from hf_soup.sweep.arguments import SweepArguments
from hf_soup.sweep.context import Sweep, SweepContext
from hf_soup.sweep.grid import RunConfig
from hf_soup.sweep.leaderboard import point_summary
from hf_soup.sweep.loop import (
    HELD_ELSEWHERE,
    begin_sweep,
    finish_sweep,
    train_in_order,
    train_unclaimed_point,
    wait_for_other_jobs,
)

AUTO = "auto"
MAX_WORKERS = 8  # `auto` never goes beyond: more processes mostly add contention
CPU_THREADS_PER_WORKER = 4
CUDA_CONTEXT_BYTES = 1 << 30  # CUDA context + cuBLAS/cuDNN workspaces of one more process, rounded up
USABLE_MEMORY_FRACTION = 0.9
LOG_DIR = ".logs"
STOP_TIMEOUT_S = 30.0
START_METHOD_VARIABLE = "HF_SOUP_START_METHOD"  # "spawn": start each worker from scratch (no fork server)
# Environment variables through which torchrun, accelerate and MPI announce a multi-process launch.
_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class GridPointsFailed(SoupError):
    """Some grid points failed while the others finished: exit 1 (a failure, not a usage mistake)."""

    exit_code = 1


# ----------------------------------------------------------------------------- how many


def parse_concurrency(text: str) -> int | str:
    """`--concurrent` value -> a positive int or AUTO; anything else is a one-line error."""
    value = str(text).strip().lower()
    if value == AUTO:
        return AUTO
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise SoupError(f"--concurrent {text!r}: expected a positive number of grid points at once, or auto")
    return workers


def requested_workers(sweep_args: SweepArguments) -> int | str:
    """The checked `--concurrent` request (before anything is planned): refused with data parallelism."""
    requested = parse_concurrency(sweep_args.concurrent)
    world = max(int(os.environ.get(name) or 1) for name in _WORLD_SIZE_VARIABLES)
    if requested != 1 and world > 1:
        raise SoupError(
            f"--concurrent {sweep_args.concurrent}: this is a data-parallel launch of {world} processes "
            "(accelerate launch / torchrun --num_processes > 1); use one or the other"
        )
    return requested


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int) -> int:
    return max(1, cores // workers)


def choose_cpu_workers(cores: int, points: int, cap: int = MAX_WORKERS) -> tuple[int, str]:
    """(K, why) for `auto` on a CPU: one worker per CPU_THREADS_PER_WORKER cores."""
    workers = max(1, min(points, cap, cores // CPU_THREADS_PER_WORKER))
    return workers, (
        f"CPU with {cores} cores: one worker per {CPU_THREADS_PER_WORKER} cores, each with cores // K = "
        f"{threads_per_worker(workers, cores)} threads"
    )


def choose_gpu_workers(
    free_bytes: int,
    peak_bytes: int,
    points: int,
    cap: int = MAX_WORKERS,
    context_bytes: int = CUDA_CONTEXT_BYTES,
) -> tuple[int, str]:
    """(K, why) for `auto` on a GPU, from one probe run's peak and the free memory measured after it.

    `free_bytes` is read while the probe worker is idle (it holds its CUDA context, nothing else),
    so the probe worker needs `peak` again and every further worker `peak + context`.
    """
    footprint = peak_bytes + context_bytes
    room = 1 + int((USABLE_MEMORY_FRACTION * free_bytes - peak_bytes) // footprint)
    workers = max(1, min(points, cap, room))
    return workers, (
        f"one run peaks at {_gib(peak_bytes)} + {_gib(context_bytes)} per extra process, {_gib(free_bytes)} free: "
        f"room for {max(room, 1)}, {points} points left, at most {cap}"
    )


def _gib(size: float) -> str:
    return f"{size / (1 << 30):.1f} GiB"


@dataclass
class WorkerPlan:
    """How many workers to run now and with how many torch threads; `auto` on CUDA probes first."""

    workers: int
    threads: int
    message: str
    cores: int
    probing: bool = False

    def observe(self, memory: dict[str, int] | None, points_left: int) -> str | None:
        """After the probe point: settle K from its measured footprint; return what to print."""
        if not self.probing or not memory:
            return None
        self.probing = False
        self.workers, why = choose_gpu_workers(memory["free_bytes"], memory["peak_bytes"], max(points_left, 1))
        self.threads = threads_per_worker(self.workers, self.cores)
        return f"concurrent auto: {self.workers} worker(s) ({why})"


def plan_workers(requested: int | str, points: int, *, on_cuda: bool, cores: int) -> WorkerPlan:
    if requested != AUTO:
        workers = max(1, min(int(requested), points))
        fewer = f"; only {points} point(s) to train" if workers < int(requested) else ""
        message = f"concurrent: {workers} worker(s), {threads_per_worker(workers, cores)} CPU thread(s) each{fewer}"
        return WorkerPlan(workers, threads_per_worker(workers, cores), message, cores)
    if on_cuda and points > 1:
        message = "concurrent auto: the first point trains alone to measure its GPU memory"
        return WorkerPlan(1, cores, message, cores, probing=True)
    workers, why = choose_cpu_workers(cores, points) if not on_cuda else (1, "one point to train")
    return WorkerPlan(
        workers, threads_per_worker(workers, cores), f"concurrent auto: {workers} worker(s) ({why})", cores
    )


def _trains_on_cuda(context: SweepContext) -> bool:
    import torch

    return torch.cuda.is_available() and not context.training_args.use_cpu


# ----------------------------------------------------------------------------- the sweep


def run_sweep_concurrently(sweep: Sweep, requested: int | str) -> list[dict[str, Any]]:
    """`sweep.loop.run_sweep` with the pending points trained by a pool of worker processes.

    Returns the records of the points trained; raises GridPointsFailed (exit 1) after the
    leaderboard when some failed.
    """
    context = sweep.context
    pending = begin_sweep(sweep)
    failures: list[str] = []
    if not pending:
        records = []
    else:
        plan = plan_workers(requested, len(pending), on_cuda=_trains_on_cuda(context), cores=usable_cores())
        print(plan.message, flush=True)
        if plan.workers == 1 and not plan.probing:
            records = train_in_order(context, pending)
        else:
            pool = _Pool(context, plan)
            records, failures = pool.run(pending)
            records += wait_for_other_jobs(context, pool.held_elsewhere)
    finish_sweep(sweep)
    if failures:
        raise GridPointsFailed(
            f"{len(failures)} of {len(pending)} grid points failed: {'; '.join(failures)}; "
            "rerun the same command to retry them"
        )
    return records


@dataclass
class _Worker:
    slot: int
    process: Any
    connection: Any
    run: RunConfig | None = None  # the point in flight
    retiring: bool = False  # told to stop, or stopping after a failure


class _Pool:
    """The parent side: start workers, feed them points, collect results, replace the dead."""

    def __init__(self, context: SweepContext, plan: WorkerPlan):
        self.context = context
        self.plan = plan
        self.log_dir = context.output_dir / LOG_DIR
        self.workers: list[_Worker] = []
        self._spawn = _process_context()
        self._payload = pickle.dumps(context)  # once, not once per worker
        self._slots = itertools.count()
        self.held_elsewhere: list[RunConfig] = []  # points another job was training: waited for after the pool

    def run(self, pending: list[RunConfig]) -> tuple[list[dict[str, Any]], list[str]]:
        """Train `pending`; return (records of the points trained, one line per failed point)."""
        from tqdm.auto import tqdm

        self.log_dir.mkdir(parents=True, exist_ok=True)
        queue = deque(pending)
        records: list[dict[str, Any]] = []
        failures: list[tuple[str, str]] = []
        bar = tqdm(total=len(pending), desc="grid", unit="run", dynamic_ncols=True)
        try:
            with _sigterm_as_interrupt():
                while queue or any(w.run for w in self.workers):
                    self._dispatch(queue)
                    for worker, message in self._next_events():
                        failed = self._settle(worker, message, records, bar, len(queue))
                        if failed:
                            run_id, why = failed
                            log = self.log_dir / f"{run_id}.log"
                            bar.write(f"{run_id}: failed: {why}; log: {log}", file=sys.stderr)
                            failures.append(failed)
        finally:
            bar.close()
            self._stop_all()
        order = {run.run_id: i for i, run in enumerate(pending)}
        return records, [f"{run_id} ({why})" for run_id, why in sorted(failures, key=lambda f: order[f[0]])]

    def _dispatch(self, queue: deque) -> None:
        """Start workers up to the plan (never more than there is work for) and give idle ones a point."""
        active = [w for w in self.workers if not w.retiring]
        busy = sum(1 for w in active if w.run)
        started = [self._start() for _ in range(min(self.plan.workers, busy + len(queue)) - len(active))]
        for worker in started:  # after all have started, so they import torch & co. in parallel
            _send_quietly(worker.connection, self._payload, raw=True)
        for worker in [*active, *started]:
            if worker.run is None:
                if queue:
                    worker.run = queue.popleft()
                    _send_quietly(worker.connection, (worker.run, self.plan.threads))  # a dead one is seen next
                else:  # nothing left for it
                    _send_quietly(worker.connection, None)
                    worker.retiring = True

    def _start(self) -> _Worker:
        """Spawn a worker. Its arguments stay tiny: the context follows over the pipe, because a child
        that dies while `start()` writes a large argument would block the parent for ever."""
        parent_end, child_end = self._spawn.Pipe()
        slot = next(self._slots)
        process = self._spawn.Process(
            target=_worker_main, args=(child_end, str(self.log_dir), slot), name=f"hf_soup-worker-{slot}"
        )
        process.start()
        child_end.close()  # so the parent's sends fail, not hang, once the child is gone
        worker = _Worker(slot, process, parent_end)
        self.workers.append(worker)
        return worker

    def _next_events(self) -> list[tuple[_Worker, Any]]:
        """Block until a worker reports or exits: [(worker, message)], message None when it died."""
        from multiprocessing.connection import wait

        by_handle = {}
        for worker in self.workers:
            by_handle[worker.connection] = worker
            by_handle[worker.process.sentinel] = worker
        ready = wait(list(by_handle))
        events, seen = [], set()
        for handle in ready:  # read messages before judging exits: a worker may report, then exit
            worker = by_handle[handle]
            if handle is worker.connection and id(worker) not in seen:
                seen.add(id(worker))
                try:
                    events.append((worker, worker.connection.recv()))
                except (EOFError, OSError):
                    events.append((worker, None))
        for handle in ready:
            worker = by_handle[handle]
            if handle is worker.process.sentinel and id(worker) not in seen:
                events.append((worker, None))
        return events

    def _settle(self, worker: _Worker, message: Any, records: list, bar: Any, queued: int) -> tuple | None:
        """Apply one event; return (run id, why) when it failed a point."""
        if message is None:  # the process ended (or its pipe closed)
            worker.process.join(timeout=STOP_TIMEOUT_S)
            self._forget(worker)
            if worker.run is None:
                return None
            bar.update(1)
            return worker.run.run_id, f"worker {worker.slot} died, {_describe_exit(worker.process.exitcode)}"
        kind, run_id, payload, memory = message
        run, worker.run = worker.run, None
        bar.update(1)
        if kind == "failed":
            worker.retiring = True  # it exits by itself; a fresh worker takes the next point
            return run_id, payload
        if payload is None:
            self.held_elsewhere.append(run)
            bar.write(f"{run_id}: {HELD_ELSEWHERE}")
            return None
        records.append(payload)
        bar.set_postfix_str(point_summary(payload))
        note = self.plan.observe(memory, queued + sum(1 for w in self.workers if w.run))
        if note:
            bar.write(note)
        return None

    def _forget(self, worker: _Worker) -> None:
        worker.connection.close()
        self.workers.remove(worker)

    def _stop_all(self) -> None:
        """Ask every worker still running to stop (SIGTERM -> SystemExit in it), then make sure."""
        for worker in self.workers:
            if worker.process.is_alive() and worker.run is not None:
                worker.process.terminate()
            elif worker.process.is_alive():
                _send_quietly(worker.connection, None)
        for worker in list(self.workers):
            worker.process.join(timeout=STOP_TIMEOUT_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            self._forget(worker)
        for log in self.log_dir.glob("worker-*.log"):  # what a worker said outside its points: mostly nothing
            if log.stat().st_size == 0:
                log.unlink()


def _process_context() -> Any:
    """A fork server preloaded with this module (so with torch, transformers and the trainer), or
    spawn where there is no fork server (Windows) or `HF_SOUP_START_METHOD=spawn` asks for it."""
    if os.environ.get(START_METHOD_VARIABLE) == "spawn" or "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _send_quietly(connection: Any, message: Any, *, raw: bool = False) -> None:
    with contextlib.suppress(OSError, ValueError):  # the worker is gone: its exit is reported, not this
        connection.send_bytes(message) if raw else connection.send(message)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class _sigterm_as_interrupt:
    """While the pool runs, SIGTERM unwinds the parent like Ctrl-C does (workers are then stopped)."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# ----------------------------------------------------------------------------- the worker side


def _worker_main(connection: Any, log_dir: str, slot: int) -> None:
    """Read the sweep's context, then train the points the parent sends, one at a time, until told
    to stop (None) or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    signal.signal(signal.SIGTERM, _exit_on_signal)
    _exit_with_parent()
    logs = Path(log_dir)
    _redirect_output(logs / f"worker-{slot}.log")
    import torch

    context: SweepContext = pickle.loads(connection.recv_bytes())  # our own parent's planned sweep
    context.training_args.disable_tqdm = True  # a log file wants lines, not progress bars
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        if message is None:
            return
        run, threads = message
        torch.set_num_threads(threads)
        _redirect_output(logs / f"{run.run_id}.log")
        if torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
        try:
            record = train_unclaimed_point(run, context)
        except Exception as err:  # the point fails, not the sweep
            traceback.print_exc()
            connection.send(("failed", run.run_id, f"{type(err).__name__}: {' '.join(str(err).split())}", None))
            return  # a failed run may leave this process in a bad state: a fresh worker takes over
        connection.send(("done", run.run_id, record, _memory_report()))


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def _exit_with_parent() -> None:
    """Stop (via SIGTERM -> SystemExit, so cleanups run) when the parent dies, even by SIGKILL."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _redirect_output(path: Path) -> None:
    """Point this process's stdout and stderr (Python's and C libraries') at `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)


def _memory_report() -> dict[str, int] | None:
    """Peak reserved GPU memory of the point just trained, and the device's free memory now."""
    import torch

    if not torch.cuda.is_initialized():
        return None
    free, total = torch.cuda.mem_get_info()
    return {"peak_bytes": int(torch.cuda.max_memory_reserved()), "free_bytes": int(free), "total_bytes": int(total)}

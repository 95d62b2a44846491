"""`--launcher submitit`: the sweep's grid as ONE job array, watched until it is done, then merged.

    python -m hf_soup.sweep --config C --launcher submitit --shards 8 --slurm_partition gpu \\
        --gpus_per_shard 1 --timeout_min 240 --merge greedy
    python -m hf_soup.sweep --config C --launcher submitit --shards 8 ... --no_wait   # submit and return
    python -m hf_soup.sweep --config C --launcher submitit --shards 8 ...             # rerun: attach / resubmit
    python -m hf_soup.sweep --config C --launcher submitit --cluster local --shards 2 # laptop mode (and the tests)

What one run does:
  1. plans the sweep exactly as a shard will (every check, the grid, its run ids: nothing is
     submitted for a command that would fail), and splits the grid into `--shards` round-robin
     shards (`--shard i/n`);
  2. reads the array record (`<output_dir>/.launcher/array.json`) and asks the scheduler (sacct,
     then squeue; process ids locally) for each shard's job state. A shard is *done* when all its
     points are ingredients and its job has ended, *running*/*pending* while its job is, *failed*
     when its job ended without them (failed, timed out, cancelled, killed), *missing* when it was
     never submitted;
  3. under a lock (two reruns at once submit once), submits every failed or missing shard as ONE
     job array (submitit: `AutoExecutor`, `submit_array`) and records the job ids; running and
     pending shards are attached to, never submitted twice. Prints the job ids and the log folder;
  4. unless `--no_wait`, waits with a progress bar over finished grid points and shard states;
     names every failed shard with its log (exit 1; a rerun resubmits only those); once every
     shard succeeded, rewrites the leaderboard and, with `--merge RECIPE`, runs the merge.

Each array job runs `ShardJob` (hf_soup.sweep.launchers.shard): the same sweep command with
`--shard i/n`, requeued through submitit's checkpointing on preemption or time-out.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_soup.atomic import exclusive_lock, write_json_atomic
from hf_soup.errors import SoupError
from hf_soup.sweep.launchers import CLUSTERS, LAUNCHER_FIELDS, LAUNCHERS, LauncherArguments, masked

DEFAULT_FOLDER = ".launcher"
RECORD_FILE = "array.json"
RECORD_FORMAT = "hf_soup.launcher"
# SLURM job states (sacct/squeue) of a job that has not ended yet; PREEMPTED jobs are requeued.
ACTIVE_STATES = frozenset(
    {
        "PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
        "RESIZING", "SUSPENDED", "PREEMPTED", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
    }
)  # fmt: skip
LOST = "LOST"  # neither sacct nor squeue knows the job and it left no result


class ShardsFailed(SoupError):
    """Some shards failed while the others finished: exit 1 (a failure, not a usage mistake)."""

    exit_code = 1


@dataclass
class ShardStatus:
    """One shard's place: its points, its latest job and what the scheduler says about it."""

    index: int
    count: int
    run_ids: list[str]
    finished_points: int
    job_id: str | None
    scheduler_state: str | None  # RUNNING, TIMEOUT, ... (None: never submitted)
    log: Path | None

    @property
    def name(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def state(self) -> str:
        """done | running | pending | failed | missing."""
        if self.scheduler_state in ACTIVE_STATES:
            return "pending" if self.scheduler_state == "PENDING" else "running"
        if self.finished_points == len(self.run_ids):
            return "done"
        return "missing" if self.job_id is None else "failed"

    def describe_failure(self) -> str:
        error = _last_error_line(self.log)
        detail = f"; {error}" if error else ""
        state = self.scheduler_state
        if state == LOST:
            state += " (it ended without a result: killed, or its node failed)"
        return f"shard {self.name} (job {self.job_id}): {state}{detail}; log: {self.log}"


# ----------------------------------------------------------------------------- entry point


def launch(parsed: Any, argv: list[str], options: LauncherArguments) -> int:
    """Submit (or attach to) the sweep's job array, wait for it, then merge. See the module docstring."""
    from hf_soup.sweep.arguments import SweepArguments
    from hf_soup.sweep.planning import plan_sweep

    sweep_args = next(a for a in parsed.arguments if isinstance(a, SweepArguments))
    _check_options(options, sweep_args)
    submitit = _import_submitit()
    sweep = plan_sweep(parsed)  # every check a shard would make, before anything is submitted
    context = sweep.context
    merge_argv = _merge_argv(options, context.output_dir)
    folder = Path(options.launcher_folder or context.output_dir / DEFAULT_FOLDER).absolute()
    argv = _shard_argv(argv, parsed)
    array = JobArray(folder, context.output_dir, context.sweep_id, sweep.runs, options)

    with array.submission_lock():
        statuses = array.poll()
        if options.cancel:
            return array.cancel(statuses)
        array.check_record_matches(statuses)
        resubmit = [s for s in statuses if s.state in ("failed", "missing")]
        for status in resubmit:
            if status.state == "failed":
                print(f"resubmitting {status.describe_failure()}", flush=True)
        if resubmit:
            if context.training_args.save_strategy == "no":
                print(
                    "note: without --save_strategy steps a preempted or failed shard restarts its interrupted "
                    "point from the beginning (finished points are always kept)",
                    flush=True,
                )
            array.submit(submitit, [s.index for s in resubmit], argv)
            statuses = array.poll()
    array.report(statuses)
    if options.no_wait:
        print("not waiting: rerun the same command to watch the array (it attaches) and to merge", flush=True)
        return 0
    statuses = array.wait(statuses)
    failed = [s for s in statuses if s.state != "done"]
    if failed:
        raise ShardsFailed(
            f"{len(failed)} of {len(statuses)} shards failed: "
            + "; ".join(s.describe_failure() for s in failed)
            + "; rerun the same command to resubmit only those"
        )
    _finish(sweep)
    if merge_argv is not None:
        _run_merge(merge_argv)
    return 0


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise SoupError(
            "--launcher submitit: submitit is not installed; pip install 'hf_soup[slurm]' (or pip install submitit)"
        ) from None
    return submitit


def _check_options(options: LauncherArguments, sweep_args: Any) -> None:
    if options.launcher not in LAUNCHERS:
        raise SoupError(f"--launcher {options.launcher!r}: expected one of {', '.join(LAUNCHERS)} (or none)")
    if options.cluster is not None and options.cluster not in CLUSTERS:
        raise SoupError(f"--cluster {options.cluster!r}: expected one of {', '.join(CLUSTERS)}")
    if sweep_args.shard is not None:
        raise SoupError("--shard: the launcher splits the grid itself (--shards N); drop --shard")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SoupError(
            "--launcher: start it as one plain process (python -m hf_soup.sweep ...), not under accelerate "
            "launch / torchrun; --gpus_per_shard G trains each shard's points on G GPUs"
        )
    for name in ("shards", "array_parallelism", "timeout_min", "cpus_per_shard"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise SoupError(f"--{name} {value}: must be at least 1")
    if options.gpus_per_shard < 0 or options.max_requeues < 0 or options.poll_interval_s <= 0:
        raise SoupError("--gpus_per_shard and --max_requeues must be >= 0, --poll_interval_s > 0")
    if options.gpus_per_shard > 1 and str(sweep_args.concurrent).strip() != "1":
        raise SoupError(
            f"--concurrent {sweep_args.concurrent}: a shard with {options.gpus_per_shard} GPUs trains each point "
            "data-parallel; use one or the other"
        )


def _merge_argv(options: LauncherArguments, output_dir: Path) -> list[str] | None:
    """The merge command's flags, checked before submitting (a typo should not wait for the whole array)."""
    if options.merge is None:
        return None
    output = options.merge_output or str(output_dir.with_name(f"{output_dir.name}-{options.merge}"))
    argv = ["--ingredients", str(output_dir), "--recipe", options.merge, "--output", output]
    argv += shlex.split(options.merge_args or "")
    from hf_soup.merge import parse_args

    parse_args(argv)  # raises SoupError on a bad recipe or flag
    return argv


def _shard_argv(argv: list[str], parsed: Any) -> list[str]:
    """The user's flags minus the launcher's: what every shard runs (`--shard i/n` is added per job).

    A config file may set launcher keys too; then `--launcher none` keeps the shards from launching.
    """
    actions = parsed.parser._option_string_actions
    kept: list[str] = []
    index = 0
    launcher_flag = False
    while index < len(argv):
        arg = argv[index]
        action = actions.get(arg.split("=", 1)[0]) if arg.startswith("--") else None
        index += 1
        if action is None or action.dest not in LAUNCHER_FIELDS:
            kept.append(arg)
            continue
        launcher_flag = launcher_flag or action.dest == "launcher"
        if "=" in arg or action.nargs == 0:
            continue
        if action.nargs in ("*", "+"):
            while index < len(argv) and not argv[index].startswith("--"):
                index += 1
        elif action.nargs is None or (action.nargs == "?" and index < len(argv) and not argv[index].startswith("--")):
            index += 1
    if "launcher" in parsed.explicit and not launcher_flag:  # set by the config file
        kept += ["--launcher", "none"]
    return kept


def _finish(sweep: Any) -> None:
    """Every shard wrote the leaderboard as it finished, seeing only its own points: write the whole one."""
    from hf_soup.atomic import write_text_atomic
    from hf_soup.sweep.leaderboard import LEADERBOARD_FILE, leaderboard

    table = leaderboard(sweep.context.output_dir, sweep.context.sweep_id)
    if table:
        write_text_atomic(sweep.context.output_dir / LEADERBOARD_FILE, table + "\n")
        print(table, flush=True)


def _run_merge(argv: list[str]) -> None:
    from hf_soup.merge import main as merge_main

    output = Path(argv[argv.index("--output") + 1])
    if (output / "soup.json").is_file() and "--overwrite" not in argv:
        print(f"merge: {output} already holds a soup; nothing to do (--merge_args --overwrite to redo it)")
        return
    print(f"python -m hf_soup.merge {shlex.join(argv)}", flush=True)
    merge_main(argv)


def _last_error_line(log: Path | None) -> str | None:
    """The sweep's own one-line `error: ...` from a shard's log, if it printed one."""
    try:
        lines = log.read_text(errors="replace").splitlines() if log is not None else []
    except OSError:
        return None
    return next((line.strip() for line in reversed(lines) if line.startswith("error: ")), None)


# ----------------------------------------------------------------------------- the array


class JobArray:
    """The shards of one sweep, their jobs (`array.json`) and the scheduler's view of them."""

    def __init__(self, folder: Path, output_dir: Path, sweep_id: str, runs: list[Any], options: LauncherArguments):
        from hf_soup.sweep.grid import shard_runs

        self.folder = folder
        self.output_dir = output_dir
        self.sweep_id = sweep_id
        self.runs = runs
        self.options = options
        self.record_path = folder / RECORD_FILE
        self.record = self._read_record()
        # Without --shards, a rerun keeps the array's layout (and so attaches to it).
        recorded = self.record.get("shards") if self.record.get("sweep_id") == sweep_id else None
        count = min(options.shards or recorded or len(runs), len(runs))
        if options.shards and options.shards > count:
            print(f"note: {options.shards} shards for {len(runs)} grid points: using {count}", flush=True)
        self.layout = [[run.run_id for run in shard_runs(runs, f"{i}/{count}")] for i in range(count)]
        self.cluster = options.cluster or self.record.get("cluster") or ("slurm" if shutil.which("srun") else "local")

    # ------------------------------------------------------------------ record

    def _read_record(self) -> dict[str, Any]:
        from hf_soup.ingredient import read_json

        if not self.record_path.is_file():
            return {}
        record = read_json(self.record_path)
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            raise SoupError(f"{self.record_path}: field 'format' must be {RECORD_FORMAT!r}")
        return record

    def _jobs(self) -> dict[int, str]:
        """shard index -> latest job id, for the record's layout (empty when it is another layout)."""
        if self.record.get("shards") != len(self.layout) or self.record.get("sweep_id") != self.sweep_id:
            return {}
        return {int(k): v["job_id"] for k, v in self.record.get("jobs", {}).items()}

    @contextlib.contextmanager
    def submission_lock(self):
        """Held from reading the states to writing the record: of two reruns at once, one submits."""
        with exclusive_lock(self.record_path, wait=True):
            yield

    def check_record_matches(self, statuses: list[ShardStatus]) -> None:
        """A record of another layout or sweep may be replaced only once none of its jobs still runs."""
        if not self.record or self._jobs():
            return
        old_ids = [v["job_id"] for v in self.record.get("jobs", {}).values()]
        active = [j for j, s in self._states(old_ids).items() if s in ACTIVE_STATES]
        if active:
            raise SoupError(
                f"{self.record_path}: an array of {self.record.get('shards')} shards of sweep "
                f"{self.record.get('sweep_id')} is still running (jobs {', '.join(active)}); wait for it, rerun "
                f"with the same settings to attach, or stop it with --cancel"
            )

    # ------------------------------------------------------------------ states

    def poll(self) -> list[ShardStatus]:
        from hf_soup.sweep.identity import finished_folders

        jobs = self._jobs()
        states = self._states(list(jobs.values()))
        done = set(finished_folders(self.output_dir, self.sweep_id, self.runs))
        statuses = []
        for index, run_ids in enumerate(self.layout):
            job_id = jobs.get(index)
            statuses.append(
                ShardStatus(
                    index=index,
                    count=len(self.layout),
                    run_ids=run_ids,
                    finished_points=sum(run_id in done for run_id in run_ids),
                    job_id=job_id,
                    scheduler_state=states.get(job_id) if job_id else None,
                    log=self._paths(job_id).stderr if job_id else None,
                )
            )
        return statuses

    def _paths(self, job_id: str):
        from submitit.core.utils import JobPaths

        return JobPaths(self.folder / "%j", job_id=job_id, task_id=0)

    def _outcome(self, job_id: str) -> str | None:
        """COMPLETED / FAILED from the job's result file, None while it has none."""
        from submitit.core.utils import pickle_load

        path = self._paths(job_id).result_pickle
        try:
            outcome = pickle_load(path)[0] if path.is_file() else None
        except Exception:  # torn or foreign file: no verdict from it
            return None
        return {"success": "COMPLETED", "error": "FAILED"}.get(outcome)

    def _states(self, job_ids: list[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        if self.cluster == "local":
            identity = {v["job_id"]: v.get("process") for v in self.record.get("jobs", {}).values()}
            return {
                job: "RUNNING" if _process_alive(job, identity.get(job)) else self._outcome(job) or LOST
                for job in job_ids
            }
        states = _slurm_states(job_ids)
        return {job: states.get(job) or self._outcome(job) or LOST for job in job_ids}

    # ------------------------------------------------------------------ actions

    def submit(self, submitit: Any, shards: list[int], argv: list[str]) -> None:
        """Submit `shards` as one job array and record their job ids (atomically)."""
        from hf_soup.ingredient import utc_now
        from hf_soup.sweep.launchers.shard import ShardJob

        options = self.options
        executor = self._executor(submitit, len(shards))
        status_dir = self.folder / "shards"
        status_dir.mkdir(parents=True, exist_ok=True)
        work = [
            ShardJob(
                argv, f"{i}/{len(self.layout)}", options.gpus_per_shard, os.getcwd(), str(status_dir / f"{i}.json")
            )
            for i in shards
        ]
        try:
            jobs = executor.submit_array(work)
        except Exception as err:  # sbatch refused (partition, account, time limit, ...)
            raise SoupError(f"submitting the array failed: {' '.join(str(err).split())}") from None
        record = self.record if self._jobs() else {}
        now = utc_now()
        job_records = dict(record.get("jobs", {}))
        for index, job in zip(shards, jobs):
            attempts = job_records.get(str(index), {}).get("submissions", 0) + 1
            job_records[str(index)] = {"job_id": job.job_id, "submitted": now, "submissions": attempts}
            if self.cluster == "local":  # the pid alone could later name another process
                job_records[str(index)]["process"] = process_identity(job.job_id)
        arrays = [*record.get("arrays", []), {"job_ids": [job.job_id for job in jobs], "shards": shards, "at": now}]
        self.record = {
            "format": RECORD_FORMAT,
            "format_version": 1,
            "sweep_id": self.sweep_id,
            "output_dir": str(self.output_dir.absolute()),
            "cluster": self.cluster,
            "shards": len(self.layout),
            "folder": str(self.folder),
            "command": masked(argv),
            "jobs": dict(sorted(job_records.items(), key=lambda item: int(item[0]))),
            "arrays": arrays,
        }
        write_json_atomic(self.record_path, self.record)
        main_ids = sorted({job.job_id.split("_")[0] for job in jobs})
        print(
            f"submitted {len(jobs)} shard job(s) on {self.cluster}: array {', '.join(main_ids)} "
            f"(shards {', '.join(str(i) for i in shards)}, at most {executor_parallelism(options, len(shards))} at once)",
            flush=True,
        )

    def _executor(self, submitit: Any, size: int) -> Any:
        options = self.options
        try:
            executor = submitit.AutoExecutor(
                folder=self.folder / "%j",
                cluster=self.cluster,
                slurm_max_num_timeout=options.max_requeues,
                local_max_num_timeout=options.max_requeues,
            )
        except RuntimeError as err:  # no srun on PATH
            raise SoupError(
                f"--cluster {self.cluster}: {err} (run on a SLURM login node, or pass --cluster local)"
            ) from None
        parameters = {
            "name": f"hf_soup-{self.sweep_id[:8]}",
            "timeout_min": options.timeout_min,
            "gpus_per_node": options.gpus_per_shard,
            "cpus_per_task": options.cpus_per_shard,
            "mem_gb": options.mem_gb,
            "slurm_partition": options.slurm_partition,
            "slurm_account": options.slurm_account,
            "slurm_qos": options.slurm_qos,
            "slurm_constraint": options.slurm_constraint,
            "slurm_setup": list(options.slurm_setup) if options.slurm_setup else None,
            "slurm_array_parallelism": executor_parallelism(options, size),
        }
        try:
            executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
        except (ValueError, NameError, AssertionError) as err:
            raise SoupError(f"launcher settings: {' '.join(str(err).split())}") from None
        return executor

    def cancel(self, statuses: list[ShardStatus]) -> int:
        active = [s for s in statuses if s.state in ("running", "pending")]
        if not active:
            print("nothing to cancel: no shard of this array is running or pending")
            return 0
        ids = [s.job_id for s in active]
        if self.cluster == "local":
            import signal

            for job in ids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(job), signal.SIGINT)  # what submitit's LocalJob.cancel sends
        else:
            result = subprocess.run(["scancel", *ids], capture_output=True, text=True)
            if result.returncode != 0:
                raise SoupError(f"scancel {' '.join(ids)} failed: {' '.join(result.stderr.split())}")
        print(f"cancelled shards {', '.join(s.name for s in active)} (jobs {', '.join(ids)})")
        return 0

    # ------------------------------------------------------------------ watching

    def report(self, statuses: list[ShardStatus]) -> None:
        """Job ids, the log folder and each shard's state: what a user needs to find a shard's output."""
        print(f"logs: {self.folder}/<job id>/  (array record: {self.record_path})", flush=True)
        for status in statuses:
            where = f"job {status.job_id}" if status.job_id else "no job"
            print(
                f"  shard {status.name}: {where}, {status.state} ({status.finished_points}/{len(status.run_ids)} points)"
            )

    def wait(self, statuses: list[ShardStatus]) -> list[ShardStatus]:
        """Until no shard is running or pending; a bar over finished grid points, shard states beside it."""
        from tqdm.auto import tqdm

        total = sum(len(s.run_ids) for s in statuses)
        bar = tqdm(total=total, desc="grid", unit="run", dynamic_ncols=True)
        seen = {s.index: s.state for s in statuses}
        try:
            while True:
                bar.n = sum(s.finished_points for s in statuses)
                bar.set_postfix_str(_state_counts(statuses))
                bar.refresh()
                if all(s.state not in ("running", "pending") for s in statuses):
                    break
                time.sleep(self.options.poll_interval_s)
                statuses = self.poll()
                for status in statuses:
                    if status.state != seen[status.index] and status.state in ("done", "failed"):
                        message = "done" if status.state == "done" else status.describe_failure()
                        bar.write(f"shard {status.name}: {message}" if status.state == "done" else message)
                    seen[status.index] = status.state
        except KeyboardInterrupt:
            tail = "they stop with this terminal on --cluster local" if self.cluster == "local" else "they keep running"
            raise SoupError(
                f"interrupted while watching the shards ({tail}); rerun the same command to attach"
            ) from None
        finally:
            bar.close()
        return statuses


def executor_parallelism(options: LauncherArguments, size: int) -> int:
    return min(options.array_parallelism or size, size)


def _state_counts(statuses: list[ShardStatus]) -> str:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status.state] = counts.get(status.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def process_identity(pid: str | int) -> dict[str, Any] | None:
    """What tells a process from a later one given the same pid: the boot it runs in and its start
    time (clock ticks since boot, /proc/<pid>/stat field 22). None when no such process exists."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except (OSError, ValueError):
        return None
    return {"boot_id": boot_id, "start_ticks": int(stat.rsplit(")", 1)[-1].split()[19])}


def _process_alive(job_id: str, identity: dict[str, Any] | None = None) -> bool:
    """Local jobs are processes (job id = the controller's pid); a zombie has ended, and so has a job
    whose pid now belongs to another process (after a reboot, or the pid reused): checked against the
    `identity` recorded at submission, or, for records without one, by its command line."""
    try:
        stat = Path(f"/proc/{int(job_id)}/stat").read_text()
    except (OSError, ValueError):
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    if identity:
        return process_identity(job_id) == identity
    try:
        return b"submitit" in Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
    except OSError:
        return False


def _slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Job id -> state, from sacct (what submitit itself reads), then squeue for jobs sacct does not list.

    A scheduler that cannot be asked at all is an error, not "every job lost": a rerun must never
    resubmit shards that are running.
    """
    from submitit.slurm.slurm import SlurmInfoWatcher

    parse = SlurmInfoWatcher().read_info
    main_ids = sorted({job.split("_")[0] for job in job_ids})
    found: dict[str, str] = {}
    errors = []
    for command in (
        ["sacct", "-o", "JobID,State,NodeList", "--parsable2", *[a for i in main_ids for a in ("-j", i)]],
        ["squeue", "--noheader", "--format", "%i|%T", "--jobs", ",".join(main_ids)],
    ):
        missing = [job for job in job_ids if job not in found]
        if not missing:
            break
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            errors.append(f"{command[0]}: {err}")
            continue
        text = result.stdout if command[0] == "sacct" else "JobID|State\n" + result.stdout
        if result.returncode != 0 and "Invalid job id" not in result.stderr:
            errors.append(f"{command[0]}: {' '.join(result.stderr.split()) or f'exit status {result.returncode}'}")
            continue
        for job, info in parse(text).items():
            if job in missing and info.get("State"):
                found[job] = info["State"].split()[0].upper().rstrip("+")  # "CANCELLED by 123" -> CANCELLED
    if len(errors) == 2:
        raise SoupError(f"cannot read the jobs' states ({'; '.join(errors)})")
    return found

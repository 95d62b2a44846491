"""The sweep's run loop: train this job's pending grid points, each into one ingredient folder.

    accelerate launch scripts/sweep.py --config configs/rte.yaml     # plans (planning.py), then loops here

Per grid point (`run_grid_point`): load the base (or the shared start) with the sweep's fixed head
initialisation, train, score heldout and test through `models.class_logits` (what the merge uses
too), and rename a complete folder into place: model.safetensors, config.json, tokenizer files,
ingredient.json.

Why the files look the way they do:
  * `<output_dir>/<run_id>/` appears complete or not at all (atomic rename), so a killed sweep
    never leaves half an ingredient; a rerun skips points whose ingredient.json is valid;
  * `<output_dir>/<run_id>.lock` (flock, released by the kernel when the process dies) lets
    shards, reruns and concurrent workers share one folder without training a point twice;
  * `<output_dir>/.work/<run_id>/` holds Trainer checkpoints only when you ask for them
    (`--save_strategy steps|epoch`); a rerun resumes from the newest complete one. Without them
    nothing but the final weights is written (no optimizer state).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from hf_soup.atomic import clear_temporaries_of, write_text_atomic
from hf_soup.errors import SoupError
from hf_soup.ingredient import build_ingredient, is_ingredient, read_ingredient
from hf_soup.sweep.context import (
    TRAJECTORY_DIR,
    WORK_DIR,
    Sweep,
    SweepContext,
    recorded_hyperparameters,
    run_options,
    training_arguments_for,
)
from hf_soup.sweep.grid import RunConfig
from hf_soup.sweep.identity import finished_folders
from hf_soup.sweep.launch import agree, configure_cpu_launch, process_state, try_lock
from hf_soup.sweep.leaderboard import LEADERBOARD_FILE, leaderboard, point_summary
from hf_soup.sweep.planning import write_sweep_file
from hf_soup.sweep.shared_start import prepare_start
from hf_soup.sweep.trainer import (
    AVERAGE_DIR,
    averaging_record,
    free_memory,
    load_model,
    score_model,
    score_splits,
    train_model,
    write_model_folder,
)

__all__ = [  # the loop's API, including what it re-exports from the modules below it
    "begin_sweep",
    "configure_cpu_launch",
    "finish_sweep",
    "ingredient_record",
    "last_complete_checkpoint",
    "process_state",
    "run_grid_point",
    "run_sweep",
    "score_model",
    "train_in_order",
    "train_unclaimed_point",
    "wait_for_other_jobs",
]

# How often a job that waits for another job's point looks whether it is done (seconds).
WAIT_POLL_S = 1.0


def last_complete_checkpoint(work: Path) -> str | None:
    """Newest `checkpoint-N` whose trainer_state.json was written (Trainer writes it last)."""
    if not work.is_dir():
        return None
    found = []
    for child in work.iterdir():
        if child.name.startswith("checkpoint-") and child.name[11:].isdigit() and child.is_dir():
            found.append((int(child.name[11:]), child))
    for _, child in sorted(found, reverse=True):
        if (child / "trainer_state.json").is_file():
            return str(child)
    return None


def run_grid_point(run: RunConfig, context: SweepContext) -> dict[str, Any]:
    """Train one grid point, score it, and (main process) write its ingredient folder atomically.

    Every rank calls this (each point trains data-parallel); only the main process writes.
    Returns the ingredient record. Resumes from the newest complete checkpoint when the run's
    arguments save resumable checkpoints.
    """

    state = process_state()
    started = time.perf_counter()
    args = training_arguments_for(run, context)
    options = run_options(run, context)
    work = Path(args.output_dir)
    resume = None
    if args.save_strategy != "no" and not args.save_only_model:
        resume = last_complete_checkpoint(work)
    elif state.is_main_process and work.exists():
        shutil.rmtree(work)  # leftovers of a run without resumable checkpoints: start over
    state.wait_for_everyone()
    if resume and state.is_main_process:
        print(f"resuming {run.run_id} from {Path(resume).name}", flush=True)
    model, _ = load_model(context, run)
    trainer, output = train_model(context, model, args, options, resume_from=resume)
    model = trainer.accelerator.unwrap_model(trainer.model)
    record = None
    if state.is_main_process:
        record, logits = ingredient_record(run, context, trainer, output, options, resumed_from=resume, started=started)
        write_model_folder(context.output_dir / run.run_id, model, context.tokenizer, record, logits=logits)
        if options.keep_trajectory:
            keep_trajectory(work, context.output_dir / TRAJECTORY_DIR / run.run_id)
        shutil.rmtree(work, ignore_errors=True)
    state.wait_for_everyone()
    del trainer, model
    free_memory()
    return record if record is not None else read_ingredient(context.output_dir / run.run_id)


def ingredient_record(
    run: RunConfig,
    context: SweepContext,
    trainer: Any,
    output: Any,
    options: Any,
    *,
    resumed_from: str | None = None,
    started: float | None = None,
    **extra: Any,
) -> tuple[dict[str, Any], Any]:
    """Score a trained point (held-out and test, the merge's scorer): (its ingredient.json record, its
    logits as `hf_soup.stored_logits.StoredLogits`, written beside the weights for the merge to reuse).

    Shared by the grid loop and `hf_soup.sweep.hpo` (whose trials add a `search` block in `extra`), so an
    ingredient reads the same whoever trained it.
    """
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model)
    scores, logits = score_splits(context, model, args.per_device_eval_batch_size)
    record = build_ingredient(
        run_id=run.run_id,
        sweep_id=context.sweep_id,
        task=context.task.name,
        primary_metric=context.task.primary_metric,
        base_model=context.base.describe(),
        model_family=context.family,
        head_init_seed=context.model_args.head_init_seed,
        seed=args.seed,
        hyperparameters=recorded_hyperparameters(run, args, options, context),
        grid_axes=list(run.varying),
        split=context.splits.describe(),
        data=context.splits.description(),
        metrics=scores,
        train={
            "runtime_s": round(float(output.metrics.get("train_runtime", 0.0)), 3),
            "samples_per_second": round(float(output.metrics.get("train_samples_per_second", 0.0)), 3),
            "steps": int(trainer.state.global_step),
            "resumed_from_step": _step_of(resumed_from),
            "stopped_early": bool(
                options.early_stopping_patience and trainer.state.global_step < trainer.state.max_steps
            ),
            "wall_s": None,
            "device": args.device.type,
            "num_processes": args.world_size,
            "precision": context.precision,
            "averaged": averaging_record(trainer),  # --average_last_k: the trajectory points averaged
        },
        start=context.start,
        command=context.command,
        **extra,
    )
    if started is not None:
        record["train"]["wall_s"] = round(time.perf_counter() - started, 3)
    return record, logits


def keep_trajectory(work: Path, destination: Path) -> None:
    """Move the points `--average_last_k` averaged out of the run's work folder before it is removed."""
    points = work / AVERAGE_DIR
    if not points.is_dir():
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        shutil.rmtree(destination)
    points.rename(destination)


def _step_of(checkpoint: str | None) -> int | None:
    return int(Path(checkpoint).name.split("-")[-1]) if checkpoint else None


def run_sweep(sweep: Sweep) -> list[dict[str, Any]]:
    """Train this job's pending grid points one after another, skipping finished ones; print a leaderboard."""
    pending = begin_sweep(sweep)
    records = train_in_order(sweep.context, pending)
    finish_sweep(sweep)
    return records


def begin_sweep(sweep: Sweep) -> list[RunConfig]:
    """List this job's unfinished points, write sweep.json, and compute the shared start (once).

    Everything a sweep does once before its points train, whoever trains them (this loop, or
    the workers of `hf_soup.sweep.concurrency`).
    """

    context = sweep.context
    state = process_state()
    finished = finished_folders(context.output_dir, context.sweep_id, sweep.mine)
    pending = []
    for run in sweep.mine:
        folder = context.output_dir / run.run_id
        if run.run_id in finished:
            continue
        if folder.exists():
            if is_ingredient(folder):  # another job of the sweep renamed it into place after the scan
                finished[run.run_id] = folder
                continue
            raise SoupError(f"{folder}: exists but holds no valid ingredient.json; remove it")
        pending.append(run)
    state.wait_for_everyone()  # every rank has listed the pending points before anything is written
    if state.is_main_process:
        context.output_dir.mkdir(parents=True, exist_ok=True)
        write_sweep_file(sweep)
        for run_id, found in finished.items():
            if found.name != run_id:
                print(f"{run_id}: finished as {found.name} (named before every axis was), skipped", flush=True)
        done = len(sweep.mine) - len(pending)
        shard = f" (shard {sweep.sweep_args.shard} of {len(sweep.runs)})" if sweep.sweep_args.shard else ""
        print(
            f"sweep {context.sweep_id}: {len(sweep.mine)} grid points{shard}, {done} already finished, "
            f"{len(pending)} to train -> {context.output_dir}",
            flush=True,
        )
    if pending:
        prepare_start(context)
    return pending


def train_in_order(context: SweepContext, pending: list[RunConfig]) -> list[dict[str, Any]]:
    """The sequential loop, with a grid progress bar (every rank trains every point, data-parallel)."""
    from tqdm.auto import tqdm

    main = process_state().is_main_process
    # In a log file (stderr not a terminal) a bar that the Trainer's nests under leaves cursor-up
    # codes behind: there, one line per finished point instead.
    lines = main and not sys.stderr.isatty()
    records, held_elsewhere = [], []
    bar = tqdm(pending, desc="grid", unit="run", disable=not main or lines, dynamic_ncols=True)
    for done, run in enumerate(bar, 1):
        record = train_unclaimed_point(run, context)
        if record is None:
            held_elsewhere.append(run)
            if main:
                bar.write(f"{run.run_id}: {HELD_ELSEWHERE}")
            continue
        records.append(record)
        if lines:
            print(f"grid {done}/{len(pending)}: {point_summary(record)}", file=sys.stderr, flush=True)
        elif main:
            bar.set_postfix_str(point_summary(record))
    bar.close()
    return records + wait_for_other_jobs(context, held_elsewhere)


HELD_ELSEWHERE = "being trained by another job; waiting for it after this job's other points"


def wait_for_other_jobs(context: SweepContext, runs: list[RunConfig]) -> list[dict[str, Any]]:
    """Wait for the points of `runs` that another job holds (an identical sweep started at the same
    time, a rerun while the first still runs), so that the leaderboard this job prints next has
    their rows. A point whose job died without finishing it is trained here. Returns the records
    of the points trained here.
    """
    state = process_state()
    main = state.is_main_process
    records = []
    for run in runs:
        dest = context.output_dir / run.run_id
        while True:
            if agree(state, lambda dest=dest: is_ingredient(dest)):
                if main:
                    print(f"{run.run_id}: finished by another job: {point_summary(read_ingredient(dest))}", flush=True)
                break
            record = train_unclaimed_point(run, context)  # None: still held (or just finished) elsewhere
            if record is not None:
                records.append(record)
                if main:
                    print(f"{run.run_id}: its job stopped before finishing it; trained here", flush=True)
                break
            time.sleep(WAIT_POLL_S)
    return records


def train_unclaimed_point(run: RunConfig, context: SweepContext) -> dict[str, Any] | None:
    """Train `run` unless another job holds its lock or has finished it (then None).

    The lock (`<run_id>.lock`, flock: released by the kernel if the process dies) is what lets
    shards, reruns and concurrent workers share one output folder without training a point twice.
    """

    state = process_state()
    dest = context.output_dir / run.run_id
    with contextlib.ExitStack() as stack:
        if not agree(state, lambda: try_lock(stack, dest) and not is_ingredient(dest)):
            return None
        if state.is_main_process:
            clear_temporaries_of(dest)
        record = run_grid_point(run, context)
        if state.is_main_process:
            Path(str(dest) + ".lock").unlink(missing_ok=True)
        return record


def finish_sweep(sweep: Sweep) -> None:
    """Tidy `.work/` and write + print the leaderboard (main process)."""

    state = process_state()
    context = sweep.context
    if state.is_main_process:
        _remove_if_empty(context.output_dir / WORK_DIR)
        table = leaderboard(context.output_dir, context.sweep_id)
        if table:
            write_text_atomic(context.output_dir / LEADERBOARD_FILE, table + "\n")  # shards may race
            print(table, flush=True)
    state.wait_for_everyone()


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()

"""The sweep's shared starting point: LP-FT and/or a warm start, computed once, every point forks from it.

    python scripts/sweep.py --config configs/rte.yaml --warm_start_epochs 1
    python scripts/sweep.py --config configs/rte.yaml --lp_ft_epochs 1 --lp_ft_learning_rate 1e-3

Why (a plain grid rarely soups: ingredients that drift into different basins average badly, and
greedy soup then keeps one model):
  * `--lp_ft_epochs E` (LP-FT): first fit the new head with the body frozen, then every grid
    point fine-tunes from that trained head. Use it when the head is large relative to the data,
    when high learning rates are in the grid, or when features matter (out-of-distribution use);
  * `--warm_start_epochs E`: one short shared fine-tune at `--warm_start_learning_rate`; every
    point forks from it, so all ingredients start in the same basin. Use it for small tasks
    (RTE, MRPC, CoLA, STS-B) or wide learning-rate ranges, where greedy soup keeps one ingredient.
Both are computed once per sweep (on the fixed settings, seed = head_init_seed) and cached in
`<output_dir>/.shared/<stage>-<sweep_id>/`, under a lock, so shards of one sweep compute it once.
A job that finds the lock held waits; if the holder dies, the waiter takes over, and if the holder
is still at it after `--shared_start_timeout` seconds (default a day) the waiter stops with a
one-line error (RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

from hf_soup import models
from hf_soup.atomic import clear_temporaries_of
from hf_soup.errors import SoupError
from hf_soup.ingredient import utc_now, weights_sha256
from hf_soup.sweep.context import SHARED_DIR, SweepContext, start_stage_arguments, start_stages
from hf_soup.sweep.launch import process_state, share_decision, try_lock
from hf_soup.sweep.trainer import free_memory, load_model, score_model, train_model, write_model_folder

START_FILE = "start.json"  # written last into a stage's folder: its presence means the stage is complete
SHARED_START_POLL_S = 2.0  # how often a waiting job looks again (a stat and a non-blocking flock)


def prepare_start(context: SweepContext) -> None:
    """Compute (once, cached in `.shared/`) the LP-FT head and/or warm start, and point the sweep at it."""
    stages = start_stages(context.finetune)
    for stage in stages:
        folder = context.output_dir / SHARED_DIR / f"{stage}-{context.sweep_id}"
        if not (folder / START_FILE).is_file():
            _run_shared(context, stage, folder)
        context.start_dir = folder
    if stages:
        info = json.loads((context.start_dir / START_FILE).read_text())
        context.start = {
            "kind": "+".join(stages),
            "path": str(context.start_dir.relative_to(context.output_dir)),
            "weights_sha256": weights_sha256(context.start_dir),
            **context.shared["start"],
            "heldout": info.get("heldout"),
        }


def _run_shared(context: SweepContext, stage: str, folder: Path) -> None:
    """Compute one stage, or wait while another job computes it.

    The folder's lock (flock: the kernel releases it when its holder dies, even by SIGKILL) says
    whether someone is computing it. A waiter polls: `start.json` appeared -> done; the lock is
    free -> the holder died or failed, so this job takes over; still held after
    `--shared_start_timeout` seconds -> a one-line error instead of a hang.
    """
    state = process_state()
    timeout = context.finetune.shared_start_timeout
    deadline = time.monotonic() + timeout
    lock = Path(f"{folder}.lock")
    waited = False
    with contextlib.ExitStack() as stack:
        while True:
            verdict = share_decision(state, lambda: _claim(stack, folder, deadline))
            if verdict == _DONE:
                return
            if verdict == _OWNER:
                break
            if verdict == _TIMED_OUT:
                raise SoupError(
                    f"shared_start_timeout: waited {timeout:g} s for the {stage} another job is computing "
                    f"({lock} is held); rerun once it has finished, or raise --shared_start_timeout"
                )
            if state.is_main_process and not waited:
                print(f"{stage}: another job is computing it ({lock} is held); waiting up to {timeout:g} s", flush=True)
            waited = True
            time.sleep(SHARED_START_POLL_S)
        if waited and state.is_main_process:
            print(f"{stage}: the job computing it stopped before finishing; computing it here", flush=True)
        _compute_stage(context, stage, folder)


_DONE, _OWNER, _WAIT, _TIMED_OUT = "done", "owner", "wait", "timed out"


def _claim(stack: contextlib.ExitStack, folder: Path, deadline: float) -> str:
    """(main process) What to do about `folder` now: one of _DONE, _OWNER, _WAIT, _TIMED_OUT."""
    if (folder / START_FILE).is_file():
        return _DONE
    if try_lock(stack, folder):
        return _DONE if (folder / START_FILE).is_file() else _OWNER  # finished just before we locked
    return _TIMED_OUT if time.monotonic() > deadline else _WAIT


def _compute_stage(context: SweepContext, stage: str, folder: Path) -> None:
    """Train one stage (every rank) and write its folder + start.json (main process), under the lock."""
    state = process_state()
    if state.is_main_process:
        clear_temporaries_of(folder)
    args, options = start_stage_arguments(context, stage)
    model, _ = load_model(context, None)
    if stage == "lp-ft":
        head = set(models.head_parameter_names(model))
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name in head)
    trainer, _ = train_model(context, model, args, options)
    model = trainer.accelerator.unwrap_model(trainer.model)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    if state.is_main_process:
        scores = score_model(context, model, args.per_device_eval_batch_size)
        info = {
            "stage": stage,
            "epochs": args.num_train_epochs,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
            "heldout": scores["heldout"],
            "created": utc_now(),
        }
        write_model_folder(folder, model, context.tokenizer, None, {START_FILE: info})
        shutil.rmtree(args.output_dir, ignore_errors=True)
        Path(f"{folder}.lock").unlink(missing_ok=True)
        print(f"{stage}: heldout {context.task.primary_metric} {scores['heldout']['primary']:.4f} -> {folder}")
    state.wait_for_everyone()
    del trainer, model
    free_memory()

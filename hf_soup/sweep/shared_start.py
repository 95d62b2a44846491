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
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

from hf_soup import models
from hf_soup.atomic import clear_temporaries_of
from hf_soup.ingredient import utc_now, weights_sha256
from hf_soup.sweep.launch import agree, process_state, try_lock
from hf_soup.sweep.planning import SHARED_DIR, FineTuneArguments, SweepContext, training_arguments_for
from hf_soup.sweep.trainer import free_memory, load_model, score_model, train_model, write_model_folder


def prepare_start(context: SweepContext) -> None:
    """Compute (once, cached in `.shared/`) the LP-FT head and/or warm start, and point the sweep at it."""
    finetune = context.finetune
    stages = [
        s for s, on in (("lp-ft", finetune.lp_ft_epochs > 0), ("warm-start", finetune.warm_start_epochs > 0)) if on
    ]
    for stage in stages:
        folder = context.output_dir / SHARED_DIR / f"{stage}-{context.sweep_id}"
        if not (folder / "start.json").is_file():
            _run_shared(context, stage, folder)
        context.start_dir = folder
    if stages:
        info = json.loads((context.start_dir / "start.json").read_text())
        context.start = {
            "kind": "+".join(stages),
            "path": str(context.start_dir.relative_to(context.output_dir)),
            "weights_sha256": weights_sha256(context.start_dir),
            **context.shared["start"],
            "heldout": info.get("heldout"),
        }


def _run_shared(context: SweepContext, stage: str, folder: Path) -> None:

    state = process_state()
    with contextlib.ExitStack() as stack:
        owner = agree(state, lambda: try_lock(stack, folder))
        if not owner:  # another job computes it: wait for the folder to appear
            while not (folder / "start.json").is_file():
                time.sleep(5)
            return
        if (folder / "start.json").is_file():
            return
        clear_temporaries_of(folder)
        finetune = context.finetune
        lp = stage == "lp-ft"
        seed = context.model_args.head_init_seed
        overrides = {
            "num_train_epochs": finetune.lp_ft_epochs if lp else finetune.warm_start_epochs,
            "max_steps": -1,
            "seed": seed,
            "save_strategy": "no",
            "eval_strategy": "no",
            "learning_rate": finetune.lp_ft_learning_rate
            if lp
            else (finetune.warm_start_learning_rate or context.training_args.learning_rate),
        }
        options = FineTuneArguments(freeze_layers=context.finetune.freeze_layers)  # no early stopping here
        args = training_arguments_for(None, context, work_name=stage, options=options, **overrides)
        model, _ = load_model(context, None)
        if lp:
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
                "epochs": overrides["num_train_epochs"],
                "learning_rate": args.learning_rate,
                "seed": seed,
                "heldout": scores["heldout"],
                "created": utc_now(),
            }
            write_model_folder(folder, model, context.tokenizer, None, {"start.json": info})
            shutil.rmtree(args.output_dir, ignore_errors=True)
            Path(str(folder) + ".lock").unlink(missing_ok=True)
            print(f"{stage}: heldout {context.task.primary_metric} {scores['heldout']['primary']:.4f} -> {folder}")
        state.wait_for_everyone()
        del trainer, model
        free_memory()

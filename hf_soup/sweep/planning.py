"""Plan a sweep: check every input, expand the grid, fix the sweep's identity; write nothing but sweep.json.

    python scripts/sweep.py --config configs/rte.yaml --help     # every field planned here

`plan_sweep` runs once per process, identically on every rank, before anything trains: it
resolves the base model, checks every key and label, expands the grid, loads the task and
tokenises it once (cached), and builds every grid point's TrainingArguments, so a bad value or
combination fails in one line before a single file is written. It also computes `sweep_id`, the
hash of what every ingredient of the folder shares (`sweep.json`'s `shared`), and refuses an
output folder that holds another sweep's ingredients, since those would not soup with these.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from hf_soup import models
from hf_soup.atomic import write_json_atomic
from hf_soup.data import load_splits, summary_lines
from hf_soup.errors import SoupError
from hf_soup.families import family_row
from hf_soup.ingredient import library_versions, utc_now
from hf_soup.redact import mask_secret_flags
from hf_soup.sweep.arguments import (
    ARGUMENT_TYPES,
    PER_RUN_FINETUNE_FIELDS,
    SWEEP_LEVEL_TRAINING_FIELDS,
    TRAINING_FIELDS,
    FineTuneArguments,
    ParsedSweep,
)
from hf_soup.sweep.context import (
    Sweep,
    SweepContext,
    run_options,
    start_stage_arguments,
    start_stages,
    training_arguments_for,
)
from hf_soup.sweep.grid import (
    Range,
    RunConfig,
    check_axes,
    check_keys,
    config_converter,
    expand_grid,
    shard_runs,
)
from hf_soup.sweep.identity import SWEEP_FILE, SWEEP_FORMAT, check_output_dir, sweep_identity
from hf_soup.sweep.launch import SHARDED_TRAINING_HELP, process_state


def plan_sweep(parsed: ParsedSweep, *, expand: bool = True) -> Sweep:
    """Validate and prepare a sweep; raises SoupError on any bad input and writes nothing in output_dir.

    `expand=False` checks the axes but draws no points (`runs` and `mine` empty): for a search
    whose sampler picks the points (hf_soup.hpo), where ranges need no `--num_samples`.
    """
    model_args, data_args, finetune, sweep_args, training_args = (
        next(a for a in parsed.arguments if isinstance(a, cls)) for cls in ARGUMENT_TYPES
    )
    if not training_args.output_dir:
        raise SoupError("no output_dir given: pass --output_dir DIR (or `output_dir:` in the config)")
    output_dir = Path(training_args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise SoupError(f"{output_dir}: output_dir is a file")
    if finetune.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise SoupError(f"precision: {finetune.precision!r} is not one of auto, fp32, bf16, fp16")
    base = models.resolve_base_model(model_args)
    family = models.resolve_family(model_args.model_family, base.config)
    if family_row(family).label_words and finetune.lp_ft_epochs > 0:
        raise SoupError(f"lp_ft_epochs: {family} has no new head to fit; use warm_start_epochs")
    _check_start_settings(finetune)
    if "dataloader_pin_memory" not in parsed.explicit and not _has_accelerator():
        training_args.dataloader_pin_memory = False  # nothing to pin for; torch would warn at every point
    axes, config_overrides = resolve_grid(parsed, base.config)
    runs = expand_grid(axes, num_samples=sweep_args.num_samples, search_seed=sweep_args.search_seed) if expand else []
    mine = shard_runs(runs, sweep_args.shard)
    from transformers import AutoTokenizer

    splits = load_splits(data_args)  # a preset, a Hub dataset or files: the task comes with the data
    task = splits.task
    models.check_task_labels(base.config, task)
    tokenizer = AutoTokenizer.from_pretrained(base.local_dir)
    token_ids = None
    if family_row(family).label_words:
        words = model_args.label_words or models.default_label_words(task)
        token_ids = models.label_token_ids(tokenizer, words, task)
        model_args.label_words = list(words)
    shared = sweep_identity(task, base, family, model_args, data_args, finetune, splits, parsed, config_overrides)
    sweep_id = hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:16]
    check_output_dir(output_dir, sweep_id, shared, splits.description())  # before the (chatty) tokenisation
    context = SweepContext(
        task=task,
        splits=splits,
        features=None,
        tokenizer=tokenizer,
        base=base,
        family=family,
        model_args=model_args,
        data_args=data_args,
        finetune=finetune,
        training_args=training_args,
        config_overrides=config_overrides,
        config_keys=frozenset(models.config_override_keys(base.config)),
        output_dir=output_dir,
        sweep_id=sweep_id,
        shared=shared,
        precision=_resolve_precision(finetune.precision, training_args, parsed.explicit),
        label_token_ids=token_ids,
        command=command_line(),
    )
    for run in runs:  # every point's settings are valid before anything is tokenised, written or trained
        check_point(run, training_arguments_for(run, context), run_options(run, context), context)
    if process_state().is_main_process:
        for line in ineffective_settings(runs, context):
            print(f"warning: {line}", file=sys.stderr, flush=True)
    for stage in start_stages(finetune):
        start_stage_arguments(context, stage)
    with process_state().main_process_first():
        context.features = models.encode_splits(splits, tokenizer, family, data_args.max_seq_length)
    models.check_t5_inputs(family, base.config, context.features)
    if process_state().is_main_process:  # what the data is, and anything carved or skipped (e.g. a test split)
        print("data: " + "\n".join(summary_lines(splits)), flush=True)
    context.train_lengths = [int(n) for n in context.features["train"]["length"]]
    return Sweep(context, runs, mine, axes, sweep_args)


def check_point(run: RunConfig, args: TrainingArguments, options: FineTuneArguments, context: SweepContext) -> None:
    """Refuse a grid point whose settings TrainingArguments accepts but that would fail later (torch
    raises after sweep.json is written) or, worse, train nothing and be written as an ingredient.

    One line naming the setting and its value, and whether it is a grid axis.
    """

    def refuse(name: str, value: Any, rule: str) -> None:
        where = " (grid axis)" if name in run.values else ""
        raise SoupError(f"{name}={value!r}{where}: {rule}")

    if args.fsdp or args.deepspeed:
        refuse("fsdp" if args.fsdp else "deepspeed", args.fsdp or args.deepspeed, SHARDED_TRAINING_HELP)
    if not args.learning_rate > 0:
        refuse("learning_rate", args.learning_rate, "must be > 0 (a point that does not learn is no ingredient)")
    if args.num_train_epochs <= 0 and args.max_steps <= 0:
        name = "max_steps" if "max_steps" in run.values and "num_train_epochs" not in run.values else "num_train_epochs"
        refuse(name, getattr(args, name), "trains no step: num_train_epochs must be > 0, or max_steps > 0")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(args, name) < 1:
            refuse(name, getattr(args, name), "must be a whole number >= 1")
    if args.weight_decay < 0:
        refuse("weight_decay", args.weight_decay, "must be >= 0")
    if args.warmup_steps < 0 or (args.warmup_steps >= 1 and args.warmup_steps != int(args.warmup_steps)):
        refuse("warmup_steps", args.warmup_steps, "must be a fraction of the steps in [0, 1) or a whole step count")
    if args.max_grad_norm is not None and args.max_grad_norm < 0:
        refuse("max_grad_norm", args.max_grad_norm, "must be >= 0 (0: no clipping)")
    for name in ("label_smoothing_factor", "adam_beta1", "adam_beta2"):
        if not 0 <= getattr(args, name) < 1:
            refuse(name, getattr(args, name), "must be in [0, 1)")
    if not args.adam_epsilon > 0:
        refuse("adam_epsilon", args.adam_epsilon, "must be > 0")
    config = {**context.config_overrides, **{k: v for k, v in run.values.items() if k in context.config_keys}}
    for name, value in config.items():
        if "dropout" in name and value is not None and not 0 <= value < 1:
            refuse(name, value, "a dropout probability must be in [0, 1)")
    layers = getattr(context.base.config, "num_hidden_layers", None)
    if options.freeze_layers < 0 or (isinstance(layers, int) and options.freeze_layers > layers):
        refuse("freeze_layers", options.freeze_layers, f"must be in [0, {layers}] (the model's layers)")
    if options.early_stopping_patience < 0 or options.early_stopping_threshold < 0:
        name = "early_stopping_patience" if options.early_stopping_patience < 0 else "early_stopping_threshold"
        refuse(name, getattr(options, name), "must be >= 0")
    for name in ("average_last_k", "average_every"):
        if getattr(options, name) < 0:
            refuse(name, getattr(options, name), "must be a whole number >= 0")
    if options.average_last_k > 1 and options.early_stopping_patience > 0:
        refuse(
            "average_last_k",
            options.average_last_k,
            "cannot be combined with early_stopping_patience (that keeps the best checkpoint, not the last ones)",
        )


def planned_steps(args: TrainingArguments, train_rows: int) -> int:
    """Optimizer steps a point will take (one process; more processes take fewer)."""
    import math

    if args.max_steps > 0:
        return int(args.max_steps)
    per_epoch = max(1, math.ceil(train_rows / args.per_device_train_batch_size) // args.gradient_accumulation_steps)
    return max(1, math.ceil(per_epoch * args.num_train_epochs))


def ineffective_settings(runs: list[RunConfig], context: SweepContext) -> list[str]:
    """Settings that cannot take effect at these run lengths: early stopping whose patience is not
    below the number of evaluations (the point is the same as without it: a bit-identical twin),
    warmup longer than the run. Said once per setting and value, before anything trains."""
    import math

    lines: dict[str, None] = {}
    rows = len(context.splits["train"])
    for run in runs:
        args, options = training_arguments_for(run, context), run_options(run, context)
        steps = planned_steps(args, rows)
        patience = options.early_stopping_patience
        if patience > 0:
            if args.eval_strategy == "steps":
                every = args.eval_steps if args.eval_steps >= 1 else math.ceil(args.eval_steps * steps)
                evaluations = steps // max(1, int(every))
            else:
                evaluations = math.ceil(args.num_train_epochs) if args.max_steps <= 0 else 1
            if evaluations <= patience:
                lines[
                    f"early_stopping_patience={patience}: a point of {steps} steps is evaluated {evaluations} "
                    f"time(s), so it can never stop early (same weights as without it); evaluate more often "
                    f"(e.g. eval_steps: 0.1) or drop the setting"
                ] = None
        warmup = int(args.warmup_steps) if args.warmup_steps >= 1 else 0
        if warmup >= steps:
            lines[f"warmup_steps={warmup}: longer than a point of {steps} steps (the learning rate never peaks)"] = None
    return list(lines)


def _check_start_settings(finetune: FineTuneArguments) -> None:
    """The shared start's own knobs (fixed for the sweep), checked like a grid point's."""
    for name in ("lp_ft_epochs", "warm_start_epochs"):
        if getattr(finetune, name) < 0:
            raise SoupError(f"{name}={getattr(finetune, name)!r}: must be >= 0 (0: off)")
    if finetune.lp_ft_epochs > 0 and not finetune.lp_ft_learning_rate > 0:
        raise SoupError(f"lp_ft_learning_rate={finetune.lp_ft_learning_rate!r}: must be > 0")
    if finetune.warm_start_learning_rate is not None and not finetune.warm_start_learning_rate > 0:
        raise SoupError(f"warm_start_learning_rate={finetune.warm_start_learning_rate!r}: must be > 0")
    if not finetune.shared_start_timeout > 0:
        raise SoupError(f"shared_start_timeout={finetune.shared_start_timeout!r}: must be > 0 seconds")


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def resolve_grid(parsed: ParsedSweep, config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check every axis and fixed key against TrainingArguments, our fields and the model's config;
    return (typed axes, fixed model-config overrides)."""
    config_values = models.config_override_keys(config)
    axes = _checked_axes(parsed, config_values)
    check_keys(parsed.extra_fixed, _all_fields() | set(config_values), parsed.source)
    return axes, {k: config_converter(config_values[k])(v) for k, v in parsed.extra_fixed.items()}


def _all_fields() -> set[str]:
    return {f.name for cls in ARGUMENT_TYPES for f in fields(cls) if f.init} | {"model"}


def _checked_axes(parsed: ParsedSweep, config_values: dict[str, Any]) -> dict[str, Any]:
    per_run = (TRAINING_FIELDS - SWEEP_LEVEL_TRAINING_FIELDS) | set(PER_RUN_FINETUNE_FIELDS) | set(config_values)
    converters = parsed.converters()
    converters.update({k: config_converter(v) for k, v in config_values.items() if k not in converters})
    return check_axes(
        parsed.axes, per_run=per_run, sweep_wide=_all_fields(), converters=converters, where=parsed.source
    )


def _resolve_precision(requested: str, args: TrainingArguments, explicit: set[str]) -> str:
    if requested != "auto":
        return requested
    if "bf16" in explicit or "fp16" in explicit:
        return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def command_line() -> str:
    """The command as typed (token values masked), recorded so an ingredient can be reproduced."""
    args = mask_secret_flags(sys.argv)
    prefix = "accelerate launch " if "ACCELERATE_MIXED_PRECISION" in os.environ else "python "
    return prefix + " ".join(shlex.quote(a) for a in args)


def write_sweep_file(sweep: Sweep, extra: dict[str, Any] | None = None) -> None:
    """sweep.json (docs/FORMATS.md), once per folder; `extra` adds keys (hf_soup.sweep.hpo: `search`)."""
    path = sweep.context.output_dir / SWEEP_FILE
    if path.is_file():
        return
    write_json_atomic(
        path,
        {
            "format": SWEEP_FORMAT,
            "format_version": 1,
            "sweep_id": sweep.context.sweep_id,
            "shared": sweep.context.shared,
            "data": sweep.context.splits.description(),
            "axes": {k: str(v) if isinstance(v, Range) else v for k, v in sweep.axes.items()},
            "num_samples": sweep.sweep_args.num_samples,
            "search_seed": sweep.sweep_args.search_seed,
            "grid_size": len(sweep.runs),
            "command": sweep.context.command,
            "versions": library_versions(),
            "created": utc_now(),
            **(extra or {}),
        },
    )

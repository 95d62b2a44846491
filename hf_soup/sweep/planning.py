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
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from hf_soup import models
from hf_soup.atomic import write_json_atomic
from hf_soup.data import LOCATION_FIELDS, DataArguments, TaskSplits, load_splits, summary_lines
from hf_soup.errors import SoupError
from hf_soup.families import family_row
from hf_soup.ingredient import INGREDIENT_FILE, is_ingredient, library_versions, utc_now
from hf_soup.redact import mask_secret_flags
from hf_soup.sweep.arguments import (
    ARGUMENT_TYPES,
    PER_RUN_FINETUNE_FIELDS,
    SWEEP_DEFAULTS,
    SWEEP_LEVEL_TRAINING_FIELDS,
    TRAINING_FIELDS,
    FineTuneArguments,
    ParsedSweep,
    SweepArguments,
)
from hf_soup.sweep.grid import (
    Range,
    RunConfig,
    check_axes,
    check_keys,
    config_converter,
    digest_of_run_id,
    expand_grid,
    shard_runs,
)
from hf_soup.sweep.launch import SHARDED_TRAINING_HELP, process_state
from hf_soup.tasks import Task

WORK_DIR = ".work"
TRAJECTORY_DIR = ".trajectory"  # --keep_trajectory: <output_dir>/.trajectory/<run id>/step-<n>/
SHARED_DIR = ".shared"
SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = "hf_soup.sweep"

# Settings that cannot change the weights a point trains to: left out of the sweep's identity, so a
# rerun may change them. An explicit list, because a setting missing here only makes a rerun with
# another value refused, while one wrongly here would let ingredients of different recipes mix.
# Everything else the user sets (file or flags) is identity, e.g. dataloader_drop_last, precision,
# tf32, group_by_length, eval_strategy (it drives early stopping).
WEIGHT_NEUTRAL_SETTINGS = frozenset(
    {
        # where things go and what is shown
        "output_dir", "run_name", "resume_from_checkpoint", "local_rank", "do_train", "do_eval", "do_predict",
        "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node", "logging_nan_inf_filter",
        "log_level", "log_level_replica", "disable_tqdm", "report_to", "project", "trackio_space_id",
        "trackio_bucket_id", "trackio_static_space_id", "include_num_input_tokens_seen", "skip_memory_metrics",
        "debug",
        # checkpoints (a resumed point reaches the uninterrupted point's weights) and the Hub
        "save_strategy", "save_steps", "save_on_each_node", "save_total_limit", "save_only_model",
        "enable_jit_checkpoint", "push_to_hub", "hub_token", "hub_private_repo", "hub_model_id", "hub_strategy",
        "hub_always_push", "hub_revision",
        # evaluation throughput, data-loading workers, memory housekeeping, timeouts
        "per_device_eval_batch_size", "eval_accumulation_steps", "eval_do_concat_batches", "eval_use_gather_object",
        "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
        "dataloader_prefetch_factor", "dataloader_multiprocessing_context", "torch_empty_cache_steps", "ddp_timeout",
        "shared_start_timeout", "keep_trajectory",
    }
)  # fmt: skip
# Core hyperparameters recorded in every ingredient (plus every axis and every fixed setting).
RECORDED_TRAINING_FIELDS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler_type",
    "max_grad_norm",
    "label_smoothing_factor",
    "optim",
)


@dataclass
class SweepContext:
    """Everything the grid points of one sweep share, built once by `plan_sweep` (no global state)."""

    task: Task
    splits: TaskSplits
    features: Any  # datasets.DatasetDict of token ids (+ `length`, `label`); set once every point is checked
    tokenizer: Any
    base: models.BaseModel
    family: str
    model_args: models.ModelArguments
    data_args: DataArguments
    finetune: FineTuneArguments
    training_args: TrainingArguments  # the fixed settings; per-run values are applied on top
    config_overrides: dict[str, Any]  # fixed model-config settings
    config_keys: frozenset[str]  # model-config fields (routes per-run values)
    output_dir: Path
    sweep_id: str
    shared: dict[str, Any]  # what sweep_id is a hash of
    precision: str
    label_token_ids: list[int] | None = None
    command: str = ""
    start_dir: Path | None = None  # LP-FT / warm-start folder every point starts from (None: the base)
    start: dict[str, Any] | None = None
    train_lengths: list[int] = field(default_factory=list)


@dataclass
class Sweep:
    """A planned sweep: its context, the whole grid, and this job's shard of it."""

    context: SweepContext
    runs: list[RunConfig]
    mine: list[RunConfig]
    axes: dict[str, Any]
    sweep_args: SweepArguments


# ----------------------------------------------------------------------------- planning


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
    shared = _sweep_identity(task, base, family, model_args, data_args, finetune, splits, parsed, config_overrides)
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


def start_stages(finetune: FineTuneArguments) -> list[str]:
    """The shared-start stages a sweep runs, in order: LP-FT first, then the warm start."""
    return [s for s, on in (("lp-ft", finetune.lp_ft_epochs > 0), ("warm-start", finetune.warm_start_epochs > 0)) if on]


def start_stage_arguments(context: SweepContext, stage: str) -> tuple[TrainingArguments, FineTuneArguments]:
    """TrainingArguments of one shared-start stage: the fixed settings, the stage's epochs and
    learning rate, seed = head_init_seed, no checkpoints, no evaluation, no early stopping."""
    finetune = context.finetune
    lp = stage == "lp-ft"
    overrides = {
        "num_train_epochs": finetune.lp_ft_epochs if lp else finetune.warm_start_epochs,
        "max_steps": -1,
        "seed": context.model_args.head_init_seed,
        "save_strategy": "no",
        "eval_strategy": "no",
        "learning_rate": finetune.lp_ft_learning_rate
        if lp
        else (finetune.warm_start_learning_rate or context.training_args.learning_rate),
    }
    options = FineTuneArguments(freeze_layers=finetune.freeze_layers)
    return training_arguments_for(None, context, work_name=stage, options=options, **overrides), options


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


def _sweep_identity(task, base, family, model_args, data_args, finetune, splits, parsed, config_overrides) -> dict:
    """What every ingredient of a sweep shares; its hash is `sweep_id`. Axes are left out, so a
    grid can be extended later; so are the settings of WEIGHT_NEUTRAL_SETTINGS."""
    fixed = {}
    for arguments in parsed.arguments:
        if isinstance(arguments, (TrainingArguments, FineTuneArguments)):
            for f in fields(arguments):
                value = getattr(arguments, f.name)
                if (
                    f.name in parsed.explicit
                    and f.name not in WEIGHT_NEUTRAL_SETTINGS
                    and _jsonable(value) != _default(f)
                ):
                    fixed[f.name] = value
    start = {}
    if finetune.lp_ft_epochs > 0:
        start.update(lp_ft_epochs=finetune.lp_ft_epochs, lp_ft_learning_rate=finetune.lp_ft_learning_rate)
    if finetune.warm_start_epochs > 0:
        start.update(
            warm_start_epochs=finetune.warm_start_epochs,
            warm_start_learning_rate=finetune.warm_start_learning_rate or _parsed_learning_rate(parsed),
        )
    return {
        "task": task.name,
        "data": splits.identity,  # task description, the data's bytes (sha256 / Hub commit), split settings
        "base_model": base.weights_sha256 or f"{base.name_or_path}@{base.revision}",
        "model_family": family,
        "head_init_seed": model_args.head_init_seed,
        "label_words": model_args.label_words,
        "split_fingerprint": splits.fingerprint,
        "max_train_samples": data_args.max_train_samples,
        "max_test_samples": data_args.max_test_samples,
        "max_seq_length": data_args.max_seq_length,
        "start": start,
        "fixed": {k: _jsonable(v) for k, v in fixed.items()},
        "config_overrides": config_overrides,
    }


def _default(f: Any) -> Any:
    """A dataclass field's default, as JSON would show it (a flag equal to it changes nothing)."""
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    return _jsonable(SWEEP_DEFAULTS.get(f.name, default))


def _parsed_learning_rate(parsed: ParsedSweep) -> float:
    return next(a for a in parsed.arguments if isinstance(a, TrainingArguments)).learning_rate


def _jsonable(value: Any) -> Any:
    value = getattr(value, "value", value)  # enums (IntervalStrategy, OptimizerNames, ...)
    return value if isinstance(value, (bool, int, float, str, type(None), list, dict)) else str(value)


def command_line() -> str:
    """The command as typed (token values masked), recorded so an ingredient can be reproduced."""
    args = mask_secret_flags(sys.argv)
    prefix = "accelerate launch " if "ACCELERATE_MIXED_PRECISION" in os.environ else "python "
    return prefix + " ".join(shlex.quote(a) for a in args)


# ----------------------------------------------------------------------------- output folder


def check_output_dir(folder: Path, sweep_id: str, shared: dict[str, Any], data: dict[str, Any] | None = None) -> None:
    """Refuse an output dir holding another sweep's ingredients (they would not soup with these).

    The refusal names the first flag, file or value that differs from the folder's sweep.json
    (`data`: this sweep's data description, to name a changed file or data flag, not a hash)."""
    if not folder.is_dir():
        return
    sweep_file = folder / SWEEP_FILE
    if sweep_file.is_file():
        try:
            other = json.loads(sweep_file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SoupError(f"{sweep_file}: not valid JSON ({err}); remove it or use another --output_dir") from None
        if other.get("sweep_id") != sweep_id:
            difference = sweep_difference(other, shared, data)
            raise SoupError(
                f"{folder}: holds a different sweep (sweep_id {other.get('sweep_id')} != {sweep_id}; "
                f"{difference}); use another --output_dir"
            )
    for child in sorted(folder.iterdir()):
        record = _peek_ingredient(child)
        if record is not None and record.get("sweep_id") != sweep_id:
            raise SoupError(
                f"{folder}: holds ingredients of a different sweep ({child.name}/ingredient.json has sweep_id "
                f"{record.get('sweep_id')}, this sweep is {sweep_id}); use another --output_dir"
            )


def finished_folders(folder: Path, sweep_id: str, runs: list[RunConfig]) -> dict[str, Path]:
    """{run id: the folder holding that point's finished ingredient} for the points of `runs` done.

    A point is found under its own id, or under an id of the older naming (which left
    single-valued axes out of the readable part, e.g. `run-<hash>` for `--grid seed=0`): same hash
    suffix, same sweep, same recorded values. So widening an axis never retrains such a point.
    """
    done: dict[str, Path] = {}
    by_digest: dict[str, list[Path]] = {}
    for child in sorted(folder.iterdir()) if folder.is_dir() else ():
        if child.is_dir() and not child.name.startswith("."):
            by_digest.setdefault(digest_of_run_id(child.name), []).append(child)
    for run in runs:
        if is_ingredient(folder / run.run_id):
            done[run.run_id] = folder / run.run_id
            continue
        for candidate in by_digest.get(digest_of_run_id(run.run_id), ()):
            record = _peek_ingredient(candidate)
            if (
                record
                and record.get("sweep_id") == sweep_id
                and _records_values(record, run)
                and is_ingredient(candidate)
            ):
                done[run.run_id] = candidate
                break
    return done


def _records_values(record: dict[str, Any], run: RunConfig) -> bool:
    """Whether an ingredient.json records exactly this point's axis values."""
    recorded = {**record.get("hyperparameters", {}), "seed": record.get("seed")}
    return all(
        k in recorded and json.dumps(recorded[k], default=str) == json.dumps(_jsonable(v), default=str)
        for k, v in run.values.items()
    )


def _peek_ingredient(folder: Path) -> dict | None:
    try:
        return json.loads((folder / INGREDIENT_FILE).read_text()) if not folder.name.startswith(".") else None
    except (OSError, json.JSONDecodeError):
        return None


# Keys of sweep.json's `shared` (and of its blocks) that are command-line flags of the same name.
_FLAG_KEYS = {"head_init_seed", "label_words", "max_train_samples", "max_test_samples", "max_seq_length"}
_FLAG_BLOCKS = {"fixed", "start", "config_overrides"}
_UNSET = object()


def sweep_difference(recorded: dict[str, Any], shared: dict[str, Any], data: dict[str, Any] | None = None) -> str:
    """What differs between a folder's sweep.json (`recorded`) and this sweep, as a user would say it:
    the flag (`--weight_decay: 0.01 before, unset now`), the file whose bytes changed, or the value.

    `data`: this sweep's data description; the recorded one is sweep.json's `data`. The data's
    part of the sweep id is a hash of it, so the difference is looked for there, not in the hash.
    """
    old = recorded.get("shared") or {}
    for key in sorted(set(old) | set(shared)):
        if _same(old.get(key, _UNSET), shared.get(key, _UNSET)):
            continue
        if key in ("data", "split_fingerprint") and data is not None and isinstance(recorded.get("data"), dict):
            found = _data_difference(recorded["data"], data)
            if found:
                return found
        return _leaf_difference(key, old.get(key, _UNSET), shared.get(key, _UNSET))
    return "written by another version"


def _same(a: Any, b: Any) -> bool:
    def dump(value: Any) -> str:
        return "<unset>" if value is _UNSET else json.dumps(value, sort_keys=True, default=str)

    return dump(a) == dump(b)


def _leaf_difference(path: str, old: Any, new: Any) -> str:
    """The first differing leaf under `path`, named as a flag where it is one."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if not _same(old.get(key, _UNSET), new.get(key, _UNSET)):
                return _leaf_difference(f"{path}.{key}", old.get(key, _UNSET), new.get(key, _UNSET))
    parts = path.split(".")
    if path in _FLAG_KEYS or (len(parts) == 2 and parts[0] in _FLAG_BLOCKS):
        name = f"--{parts[-1]}"
    elif path == "base_model":
        name = "--model (its weights' sha256, or name@revision)"
    else:
        name = path
    return f"{name}: {_shown(old)} before, {_shown(new)} now"


def _shown(value: Any) -> str:
    return "unset" if value is _UNSET else repr(value)


def _data_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The data flag, changed file or task fact behind a different data description (None: none found).

    Data flags first (`--train_file`, `--heldout_size`, ...), then the bytes of each source file or
    the Hub commit, then what the data made of them (labels, metrics, held-out and test carving).
    """
    old_args, new_args = old.get("arguments") or {}, new.get("arguments") or {}
    for key in sorted(set(old_args) | set(new_args)):
        if key in (*LOCATION_FIELDS, "max_seq_length"):  # where the files lie: their bytes are compared below
            continue
        if not _same(old_args.get(key, _UNSET), new_args.get(key, _UNSET)):
            return f"--{key}: {_shown(old_args.get(key, _UNSET))} before, {_shown(new_args.get(key, _UNSET))} now"
    old_source, new_source = old.get("source") or {}, new.get("source") or {}
    old_files, new_files = old_source.get("files") or {}, new_source.get("files") or {}
    for split in sorted(set(old_files) & set(new_files)):
        before, now = old_files[split].get("sha256"), new_files[split].get("sha256")
        if before != now:
            hashes = f"sha256 {str(before)[:12]}… before, {str(now)[:12]}… now"
            old_path, new_path = old_files[split].get("path"), new_files[split].get("path")
            if old_path != new_path:
                return f"the {split} file: {old_path} before, {new_path} now, with other contents ({hashes})"
            return f"the {split} file {new_path} changed since this folder's sweep began ({hashes})"
    for key in ("source", "task", "heldout", "test"):
        before, now = old.get(key, _UNSET), new.get(key, _UNSET)
        if not _same(_without_paths(before), _without_paths(now)):
            return _leaf_difference(f"data.{key}", _without_paths(before), _without_paths(now))
    return None


def _without_paths(value: Any) -> Any:
    """Where a file lies is not what it holds: paths are left out of a comparison (as in the sweep id)."""
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items() if k not in ("path", "where")}
    return value


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


def training_arguments_for(
    run: RunConfig | None,
    context: SweepContext,
    *,
    work_name: str | None = None,
    options: FineTuneArguments | None = None,
    **overrides: Any,
) -> TrainingArguments:
    """The fixed TrainingArguments + this point's values + the sweep's precision and wiring."""
    base = context.training_args
    values = {f.name: getattr(base, f.name) for f in fields(base) if f.init}
    if run is not None:
        values.update({k: v for k, v in run.values.items() if k in TRAINING_FIELDS})
    values.update(overrides)
    values["output_dir"] = str(context.output_dir / WORK_DIR / (work_name or run.run_id))
    values["bf16"], values["fp16"] = context.precision == "bf16", context.precision == "fp16"
    options = options or run_options(run, context)
    resumable = values["save_strategy"] != "no" and not values["save_only_model"]
    if options.early_stopping_patience > 0:
        strategy = values["eval_strategy"] if values["eval_strategy"] != "no" else "epoch"
        values.update(
            eval_strategy=strategy,
            save_strategy=strategy,
            load_best_model_at_end=True,
            metric_for_best_model=values["metric_for_best_model"] or "primary",
            save_total_limit=values["save_total_limit"] or 1,
            save_only_model=not resumable,
        )
        if strategy == "steps":
            values["save_steps"] = values["eval_steps"] or values["logging_steps"]
    try:
        return TrainingArguments(**values)
    except (ValueError, TypeError) as err:
        where = f"grid point {run.run_id}" if run is not None else "training arguments"
        raise SoupError(f"{where}: {' '.join(str(err).split())}") from None


def run_options(run: RunConfig | None, context: SweepContext) -> FineTuneArguments:
    options = FineTuneArguments(**{f.name: getattr(context.finetune, f.name) for f in fields(FineTuneArguments)})
    for key in PER_RUN_FINETUNE_FIELDS:
        if run is not None and key in run.values:
            setattr(options, key, run.values[key])
    return options


def recorded_hyperparameters(
    run: RunConfig, args: TrainingArguments, options: FineTuneArguments, context: SweepContext
) -> dict[str, Any]:
    """What ingredient.json records in `hyperparameters` (docs/FORMATS.md): core knobs, fixed settings, axes."""
    recorded = {name: _jsonable(getattr(args, name)) for name in RECORDED_TRAINING_FIELDS}
    recorded["max_seq_length"] = context.data_args.max_seq_length
    recorded.update({k: getattr(options, k) for k in PER_RUN_FINETUNE_FIELDS})
    recorded.update(context.config_overrides)
    recorded.update({k: _jsonable(v) for k, v in context.shared["fixed"].items()})
    recorded.update({k: _jsonable(v) for k, v in run.values.items()})
    recorded.pop("seed", None)  # top-level field
    return recorded

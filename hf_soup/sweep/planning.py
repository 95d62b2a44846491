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
from hf_soup.data import DataArguments, TaskSplits, load_splits, summary_lines
from hf_soup.errors import SoupError
from hf_soup.grid import (
    ParsedSweep,
    Range,
    RunConfig,
    SweepArguments,
    check_keys,
    coerce_axes,
    expand_grid,
    parse_scalar,
    shard_runs,
)
from hf_soup.ingredient import INGREDIENT_FILE, library_versions, utc_now
from hf_soup.sweep.launch import process_state
from hf_soup.tasks import Task

WORK_DIR = ".work"
SHARED_DIR = ".shared"
SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = "hf_soup.sweep"

# TrainingArguments defaults the sweep changes; a flag or the config file overrides each of them.
SWEEP_DEFAULTS = {
    "save_strategy": "no",  # no checkpoints (and no optimizer state) unless asked for
    "per_device_eval_batch_size": 64,
}
# TrainingArguments fields that are about the sweep, not a run: never grid axes.
SWEEP_LEVEL_TRAINING_FIELDS = frozenset({"output_dir", "resume_from_checkpoint"})
# Fields that change nothing in the weights: left out of the sweep's identity.
_NON_SEMANTIC_PREFIXES = (
    "output_dir",
    "logging_",
    "log_",
    "report_to",
    "run_name",
    "disable_tqdm",
    "save_",
    "dataloader_",
    "hub_",
    "push_to_hub",
    "per_device_eval_batch_size",
    "eval_accumulation",
    "skip_memory_metrics",
    "resume_from_checkpoint",
    "include_",
    "config",
    "grid",
    "shard",
    "precision",
    "bf16",
    "fp16",
    "tf32",
    "group_by_length",
)
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
class FineTuneArguments:
    """hf_soup's own knobs. The first three can be grid axes; the rest are shared by the sweep."""

    freeze_layers: int = field(default=0, metadata={"help": "freeze the embeddings and the first k layers"})
    early_stopping_patience: int = field(
        default=0, metadata={"help": "stop after this many evaluations on heldout without improvement (0: off)"}
    )
    early_stopping_threshold: float = field(default=0.0, metadata={"help": "minimum heldout improvement that counts"})
    warm_start_epochs: float = field(
        default=0.0, metadata={"help": "one shared short fine-tune every grid point forks from (0: off)"}
    )
    warm_start_learning_rate: float | None = field(
        default=None, metadata={"help": "learning rate of the warm start (default: --learning_rate)"}
    )
    lp_ft_epochs: float = field(
        default=0.0, metadata={"help": "LP-FT: fit the head with the body frozen for this many epochs first (0: off)"}
    )
    lp_ft_learning_rate: float = field(default=1e-3, metadata={"help": "learning rate of the LP-FT head fit"})
    precision: str = field(
        default="auto", metadata={"help": "auto (bf16 on GPUs that have it, else fp32) | fp32 | bf16 | fp16"}
    )
    group_by_length: bool = field(
        default=True, metadata={"help": "batch examples of similar length together (less padding, same epochs)"}
    )


PER_RUN_FINETUNE_FIELDS = ("freeze_layers", "early_stopping_patience", "early_stopping_threshold")
ARGUMENT_TYPES = (models.ModelArguments, DataArguments, FineTuneArguments, SweepArguments, TrainingArguments)
TRAINING_FIELDS = frozenset(f.name for f in fields(TrainingArguments) if f.init)


@dataclass
class SweepContext:
    """Everything the grid points of one sweep share, built once by `plan_sweep` (no global state)."""

    task: Task
    splits: TaskSplits
    features: Any  # datasets.DatasetDict of token ids (+ `length`, `label`)
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


def plan_sweep(parsed: ParsedSweep) -> Sweep:
    """Validate and prepare a sweep; raises SoupError on any bad input and writes nothing in output_dir."""
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
    splits = load_splits(data_args)  # a preset, a Hub dataset or files: the task comes with the data
    task = splits.task
    models.check_task_labels(base.config, task)
    if family == models.T5_TEXT2TEXT and finetune.lp_ft_epochs > 0:
        raise SoupError("lp_ft_epochs: t5-text2text has no new head to fit; use warm_start_epochs")
    axes, config_overrides = resolve_grid(parsed, base.config)
    runs = expand_grid(axes, num_samples=sweep_args.num_samples, search_seed=sweep_args.search_seed)
    mine = shard_runs(runs, sweep_args.shard)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.local_dir)
    token_ids = None
    if family == models.T5_TEXT2TEXT:
        words = model_args.label_words or models.default_label_words(task)
        token_ids = models.label_token_ids(tokenizer, words, task)
        model_args.label_words = list(words)
    shared = _sweep_identity(task, base, family, model_args, data_args, finetune, splits, parsed, config_overrides)
    sweep_id = hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:16]
    check_output_dir(output_dir, sweep_id, shared)  # before the (cached, but chatty) tokenisation
    with process_state().main_process_first():
        features = models.encode_splits(splits, tokenizer, family, data_args.max_seq_length)
    models.check_t5_inputs(family, base.config, features)
    if process_state().is_main_process:  # what the data is, and anything carved or skipped (e.g. a test split)
        print("data: " + "\n".join(summary_lines(splits)), flush=True)

    context = SweepContext(
        task=task,
        splits=splits,
        features=features,
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
        train_lengths=[int(n) for n in features["train"]["length"]],
    )
    for run in mine:  # every point's arguments are valid before anything trains
        training_arguments_for(run, context)
    return Sweep(context, runs, mine, axes, sweep_args)


def resolve_grid(parsed: ParsedSweep, config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check every axis and fixed key against TrainingArguments, our fields and the model's config;
    return (typed axes, fixed model-config overrides)."""
    config_values = models.config_override_keys(config)
    axes = _checked_axes(parsed, config_values)
    check_keys(parsed.extra_fixed, _all_fields() | set(config_values), parsed.source)
    return axes, {k: _config_converter(config_values[k])(v) for k, v in parsed.extra_fixed.items()}


def _all_fields() -> set[str]:
    return {f.name for cls in ARGUMENT_TYPES for f in fields(cls) if f.init} | {"model"}


def _checked_axes(parsed: ParsedSweep, config_values: dict[str, Any]) -> dict[str, Any]:
    per_run = (TRAINING_FIELDS - SWEEP_LEVEL_TRAINING_FIELDS) | set(PER_RUN_FINETUNE_FIELDS) | set(config_values)
    for key in parsed.axes:
        if key in _all_fields() and key not in per_run:
            raise SoupError(f"{parsed.source}: {key!r} is shared by the whole sweep and cannot be a grid axis")
    check_keys(parsed.axes, per_run, parsed.source, what="grid axis")
    converters = parsed.converters()
    converters.update({k: _config_converter(v) for k, v in config_values.items() if k not in converters})
    return coerce_axes(parsed.axes, converters)


def _config_converter(current: Any):
    """Model-config overrides are floats (see models.config_override_keys); unset fields take any literal."""

    def convert(value: Any) -> Any:
        if isinstance(current, float):
            return float(value)
        return parse_scalar(value) if isinstance(value, str) else value

    return convert


def _resolve_precision(requested: str, args: TrainingArguments, explicit: set[str]) -> str:
    if requested != "auto":
        return requested
    if "bf16" in explicit or "fp16" in explicit:
        return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def _semantic(name: str) -> bool:
    return not name.startswith(_NON_SEMANTIC_PREFIXES)


def _sweep_identity(task, base, family, model_args, data_args, finetune, splits, parsed, config_overrides) -> dict:
    """What every ingredient of a sweep shares; its hash is `sweep_id`. Axes are left out, so a
    grid can be extended later; settings that do not change weights (logging, saving) too."""
    fixed = {}
    for arguments in parsed.arguments:
        if isinstance(arguments, (TrainingArguments, FineTuneArguments)):
            for f in fields(arguments):
                value = getattr(arguments, f.name)
                if f.name in parsed.explicit and _semantic(f.name) and _jsonable(value) != _default(f):
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
    args = list(sys.argv)
    for i, arg in enumerate(args):
        if "token" in arg.lower() and arg.startswith("--"):
            if "=" in arg:
                args[i] = arg.split("=", 1)[0] + "=***"
            elif i + 1 < len(args):
                args[i + 1] = "***"
    prefix = "accelerate launch " if "ACCELERATE_MIXED_PRECISION" in os.environ else "python "
    return prefix + " ".join(shlex.quote(a) for a in args)


# ----------------------------------------------------------------------------- output folder


def check_output_dir(folder: Path, sweep_id: str, shared: dict[str, Any]) -> None:
    """Refuse an output dir holding another sweep's ingredients (they would not soup with these)."""
    if not folder.is_dir():
        return
    sweep_file = folder / SWEEP_FILE
    if sweep_file.is_file():
        try:
            other = json.loads(sweep_file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SoupError(f"{sweep_file}: not valid JSON ({err}); remove it or use another --output_dir") from None
        if other.get("sweep_id") != sweep_id:
            difference = _first_difference(other.get("shared", {}), shared)
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


def _peek_ingredient(folder: Path) -> dict | None:
    try:
        return json.loads((folder / INGREDIENT_FILE).read_text()) if not folder.name.startswith(".") else None
    except (OSError, json.JSONDecodeError):
        return None


def _first_difference(old: dict, new: dict) -> str:
    for key in sorted(set(old) | set(new)):
        if json.dumps(old.get(key), sort_keys=True, default=str) != json.dumps(
            new.get(key), sort_keys=True, default=str
        ):
            return f"{key}: {old.get(key)!r} before, {new.get(key)!r} now"
    return "written by another version"


def write_sweep_file(sweep: Sweep) -> None:
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

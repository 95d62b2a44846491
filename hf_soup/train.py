"""Fine-tune one grid point with `transformers.Trainer` and write it as a soup ingredient.

    accelerate launch scripts/sweep.py --config configs/rte.yaml     # the entry point (plans, then loops here)
    python -m pytest tests/test_train.py                              # tiny random BERT/T5, seconds

Per sweep (`plan_sweep`, once, identical on every rank, nothing written): resolve the base model,
check every key and label, expand the grid, load the task and tokenise it once (cached), and
build every grid point's TrainingArguments so a bad combination fails before any training.
Per grid point (`run_grid_point`): load the base with the sweep's fixed head initialisation,
train (dynamic padding, length-grouped batches, bf16 where the GPU has it, fused AdamW), score
heldout and test through `models.class_logits` (what the merge uses too), and rename a complete
folder into place: model.safetensors, config.json, tokenizer files, ingredient.json.

Why the files look the way they do:
  * `<output_dir>/<run_id>/` appears complete or not at all (atomic rename), so a killed sweep
    never leaves half an ingredient; a rerun skips points whose ingredient.json is valid;
  * `<output_dir>/.work/<run_id>/` holds Trainer checkpoints only when you ask for them
    (`--save_strategy steps|epoch`); a rerun resumes from the newest complete one. Without them
    nothing but the final weights is written (no optimizer state);
  * `<output_dir>/.shared/` caches the sweep's shared starting point (LP-FT, warm start);
  * `<output_dir>/sweep.json` names the sweep (`sweep_id`): a folder holding another sweep's
    ingredients is refused, since its ingredients could not be souped with these.

Soup-friendly starts (a plain grid rarely soups: ingredients that drift into different basins
average badly, and greedy soup then keeps one model):
  * `--lp_ft_epochs E` (LP-FT): first fit the new head with the body frozen, then every grid
    point fine-tunes from that trained head. Use it when the head is large relative to the data,
    when high learning rates are in the grid, or when features matter (out-of-distribution use);
  * `--warm_start_epochs E`: one short shared fine-tune at `--warm_start_learning_rate`; every
    point forks from it, so all ingredients start in the same basin. Use it for small tasks
    (RTE, MRPC, CoLA, STS-B) or wide learning-rate ranges, where greedy soup keeps one ingredient.
Both are computed once per sweep (on the fixed settings, seed = head_init_seed) and cached.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from hf_soup import models
from hf_soup.atomic import atomic_dir, clear_temporaries_of, exclusive_lock, write_json_atomic
from hf_soup.data import DataArguments, GlueSplits, load_glue
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
from hf_soup.ingredient import (
    INGREDIENT_FILE,
    build_ingredient,
    is_ingredient,
    library_versions,
    read_ingredient,
    utc_now,
    weights_sha256,
    write_ingredient,
)
from hf_soup.metrics import make_compute_metrics
from hf_soup.tasks import Task, get_task

WORK_DIR = ".work"
SHARED_DIR = ".shared"
SWEEP_FILE = "sweep.json"
LEADERBOARD_FILE = "leaderboard.md"
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
_TRAINING_FIELDS = frozenset(f.name for f in fields(TrainingArguments) if f.init)


@dataclass
class SweepContext:
    """Everything the grid points of one sweep share, built once by `plan_sweep` (no global state)."""

    task: Task
    splits: GlueSplits
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
    task = get_task(data_args.task)
    if finetune.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise SoupError(f"precision: {finetune.precision!r} is not one of auto, fp32, bf16, fp16")
    base = models.resolve_base_model(model_args)
    family = models.resolve_family(model_args.model_family, base.config)
    models.check_task_labels(base.config, task)
    if family == models.T5_TEXT2TEXT and finetune.lp_ft_epochs > 0:
        raise SoupError("lp_ft_epochs: t5-text2text has no new head to fit; use warm_start_epochs")
    axes, config_overrides = resolve_grid(parsed, base.config)
    runs = expand_grid(axes, num_samples=sweep_args.num_samples, search_seed=sweep_args.search_seed)
    mine = shard_runs(runs, sweep_args.shard)
    from transformers import AutoTokenizer

    splits = load_glue(data_args)
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
    per_run = (_TRAINING_FIELDS - SWEEP_LEVEL_TRAINING_FIELDS) | set(PER_RUN_FINETUNE_FIELDS) | set(config_values)
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


def _write_sweep_file(sweep: Sweep) -> None:
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
            "axes": {k: str(v) if isinstance(v, Range) else v for k, v in sweep.axes.items()},
            "num_samples": sweep.sweep_args.num_samples,
            "search_seed": sweep.sweep_args.search_seed,
            "grid_size": len(sweep.runs),
            "command": sweep.context.command,
            "versions": library_versions(),
            "created": utc_now(),
        },
    )


def configure_cpu_launch() -> bool:
    """In a multi-process launch without CUDA (`torchrun --nproc_per_node N` on CPUs), tell the
    Trainer to form a CPU (gloo) process group. Call it before any TrainingArguments is built: each
    one sets up its device from `ACCELERATE_USE_CPU`. Returns whether this is such a launch."""
    import torch

    cpu_launch = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if cpu_launch:
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    return cpu_launch


def process_state():
    """This process's place in a multi-process launch (`torchrun`, `accelerate launch`), CUDA or not.

    Why: without CUDA, Accelerate forms a process group only when asked for the CPU; without it, N
    CPU processes would each run the whole sweep instead of training every point data-parallel.
    """
    from accelerate import PartialState

    return PartialState(cpu=True) if configure_cpu_launch() else PartialState()


# ----------------------------------------------------------------------------- one run


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
        values.update({k: v for k, v in run.values.items() if k in _TRAINING_FIELDS})
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


class SoupTrainer(Trainer):
    """Trainer with length-grouped training batches read from the cached `length` column.

    transformers 5.0 dropped `group_by_length` (later releases moved it to
    `train_sampling_strategy`, which looks for the length column after unused columns were
    dropped and so re-measures every example). Passing `train_lengths` turns grouping on: batches
    of similar length, shuffled in mega-batches by the run's seed (transformers' own
    LengthGroupedSampler), so dynamic padding pads little.
    """

    def __init__(self, *args: Any, train_lengths: list[int] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.train_lengths = train_lengths

    def _get_train_sampler(self, train_dataset=None):
        if self.train_lengths:
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochLengthGroupedSampler(batch, self.train_lengths, seed)
        return super()._get_train_sampler(train_dataset)


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order drawn from (seed, epoch) alone, not from the global RNG.

    So every rank draws the same order, and a run resumed mid-epoch (Trainer skips the batches
    already seen) sees exactly the batches the uninterrupted run would have seen.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by accelerate's data loader every epoch
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class Text2TextCollator:
    """Pads inputs and turns each class id into the target `<label word's first token> <eos>`."""

    def __init__(self, tokenizer: Any, label_token_ids: list[int], eos_token_id: int, pad_to_multiple_of=None):
        self.tokenizer = tokenizer
        self.label_token_ids = torch.tensor(label_token_ids)
        self.eos_token_id = eos_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        classes = torch.tensor([int(f["label"]) for f in features])
        rows = [{k: v for k, v in f.items() if k not in ("label", "labels")} for f in features]
        batch = self.tokenizer.pad(rows, return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of)
        targets = self.label_token_ids[classes]
        batch["labels"] = torch.stack([targets, torch.full_like(targets, self.eos_token_id)], dim=1)
        return batch


def _collator(context: SweepContext):
    from transformers import DataCollatorWithPadding

    multiple = 8 if torch.cuda.is_available() else None  # tensor-core friendly shapes on GPUs
    if context.family == models.T5_TEXT2TEXT:
        return Text2TextCollator(context.tokenizer, context.label_token_ids, context.base.config.eos_token_id, multiple)
    return DataCollatorWithPadding(context.tokenizer, pad_to_multiple_of=multiple)


def _heldout_metrics(context: SweepContext):
    """(compute_metrics, preprocess_logits_for_metrics) for Trainer.evaluate on heldout, any family."""
    compute = make_compute_metrics(context.task)
    if context.family != models.T5_TEXT2TEXT:
        return compute, lambda logits, labels: logits[0] if isinstance(logits, tuple) else logits
    label_ids = torch.tensor(context.label_token_ids)
    lookup = {int(token): i for i, token in enumerate(context.label_token_ids)}

    def preprocess(logits, labels):
        logits = logits[0] if isinstance(logits, tuple) else logits
        return logits[:, 0, :].index_select(-1, label_ids.to(logits.device))

    def metrics(prediction):
        prediction.label_ids = np.array([lookup[int(t)] for t in np.asarray(prediction.label_ids)[:, 0]])
        return compute(prediction)

    return metrics, preprocess


def _load_model(context: SweepContext, run: RunConfig | None, *, source: Path | None = None) -> tuple[Any, list]:
    per_run = {
        k: v for k, v in (run.values.items() if run else ()) if k in context.config_keys and k not in _TRAINING_FIELDS
    }
    model, new = models.load_for_task(
        source or context.start_dir or context.base.local_dir,
        context.family,
        context.task,
        head_init_seed=context.model_args.head_init_seed,
        config_overrides={**context.config_overrides, **per_run},
        label_words=context.model_args.label_words,
        token_ids=context.label_token_ids,
        allow_pickle=context.model_args.allow_pickle,
    )
    models.freeze_layers(model, run_options(run, context).freeze_layers)
    return model, new


def _train(
    context: SweepContext,
    model: Any,
    args: TrainingArguments,
    options: FineTuneArguments,
    resume_from: str | None = None,
) -> tuple[Any, Any]:
    early = options.early_stopping_patience > 0
    evaluating = args.eval_strategy != "no"  # evaluation during training is always on heldout, never test
    compute_metrics, preprocess = _heldout_metrics(context) if evaluating else (None, None)
    trainer = SoupTrainer(
        model=model,
        args=args,
        train_dataset=context.features["train"],
        eval_dataset=context.features["heldout"] if evaluating else None,
        data_collator=_collator(context),
        processing_class=context.tokenizer,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess,
        train_lengths=context.train_lengths if context.finetune.group_by_length else None,
        callbacks=[EarlyStoppingCallback(options.early_stopping_patience, options.early_stopping_threshold)]
        if early
        else None,
    )
    output = trainer.train(resume_from_checkpoint=resume_from)
    return trainer, output


def score_model(context: SweepContext, model: Any, batch_size: int) -> dict[str, dict[str, float]]:
    """Metrics (with `primary` and `loss`) on heldout and every test split: what ingredient.json records.

    Uses the merge's Scorer with the family-aware `class_logits`, so a sweep's recorded scores and a
    merge's re-scoring of the same folder are the same computation.
    """
    from hf_soup.scoring import Scorer

    names = ["heldout", *context.task.test_split_names]
    scorer = Scorer(
        model,
        context.task,
        {name: context.features[name] for name in names},
        batch_size=batch_size,
        pad_token_id=context.tokenizer.pad_token_id or 0,
        device=next(model.parameters()).device,
        logits_fn=models.class_logits,
    )
    return {name: scorer.score(name).metrics for name in names}


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


def _hyperparameters(run: RunConfig, args: TrainingArguments, options: FineTuneArguments, context: SweepContext):
    recorded = {name: _jsonable(getattr(args, name)) for name in RECORDED_TRAINING_FIELDS}
    recorded["max_seq_length"] = context.data_args.max_seq_length
    recorded.update({k: getattr(options, k) for k in PER_RUN_FINETUNE_FIELDS})
    recorded.update(context.config_overrides)
    recorded.update({k: _jsonable(v) for k, v in context.shared["fixed"].items()})
    recorded.update({k: _jsonable(v) for k, v in run.values.items()})
    recorded.pop("seed", None)  # top-level field
    return recorded


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
    model, _ = _load_model(context, run)
    trainer, output = _train(context, model, args, options, resume_from=resume)
    model = trainer.accelerator.unwrap_model(trainer.model)
    record = None
    if state.is_main_process:
        scores = score_model(context, model, args.per_device_eval_batch_size)
        record = build_ingredient(
            run_id=run.run_id,
            sweep_id=context.sweep_id,
            task=context.task.name,
            primary_metric=context.task.primary_metric,
            base_model=context.base.describe(),
            model_family=context.family,
            head_init_seed=context.model_args.head_init_seed,
            seed=args.seed,
            hyperparameters=_hyperparameters(run, args, options, context),
            grid_axes=list(run.varying),
            split=context.splits.describe(),
            metrics=scores,
            train={
                "runtime_s": round(float(output.metrics.get("train_runtime", 0.0)), 3),
                "samples_per_second": round(float(output.metrics.get("train_samples_per_second", 0.0)), 3),
                "steps": int(trainer.state.global_step),
                "resumed_from_step": _step_of(resume),
                "stopped_early": bool(
                    options.early_stopping_patience and trainer.state.global_step < trainer.state.max_steps
                ),
                "wall_s": None,
                "device": args.device.type,
                "num_processes": args.world_size,
                "precision": context.precision,
            },
            start=context.start,
            command=context.command,
        )
        record["train"]["wall_s"] = round(time.perf_counter() - started, 3)
        _write_model_folder(context.output_dir / run.run_id, model, context.tokenizer, record)
        shutil.rmtree(work, ignore_errors=True)
    state.wait_for_everyone()
    del trainer, model
    _free_memory()
    return record if record is not None else read_ingredient(context.output_dir / run.run_id)


def _step_of(checkpoint: str | None) -> int | None:
    return int(Path(checkpoint).name.split("-")[-1]) if checkpoint else None


def _write_model_folder(dest: Path, model: Any, tokenizer: Any, record: dict | None, extra: dict | None = None):
    with atomic_dir(dest) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if record is not None:
            write_ingredient(tmp, record)
        for name, payload in (extra or {}).items():
            write_json_atomic(tmp / name, payload)


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- shared start (LP-FT, warm start)


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
        owner = _agree(state, lambda: _try_lock(stack, folder))
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
        model, _ = _load_model(context, None)
        if lp:
            head = set(models.head_parameter_names(model))
            for name, parameter in model.named_parameters():
                parameter.requires_grad_(name in head)
        trainer, _ = _train(context, model, args, options)
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
            _write_model_folder(folder, model, context.tokenizer, None, {"start.json": info})
            shutil.rmtree(args.output_dir, ignore_errors=True)
            Path(str(folder) + ".lock").unlink(missing_ok=True)
            print(f"{stage}: heldout {context.task.primary_metric} {scores['heldout']['primary']:.4f} -> {folder}")
        state.wait_for_everyone()
        del trainer, model
        _free_memory()


def _try_lock(stack: contextlib.ExitStack, target: Path) -> bool:
    try:
        stack.enter_context(exclusive_lock(target))
    except SoupError:
        return False
    return True


def _agree(state: Any, decide) -> bool:
    """The main process decides (e.g. takes a lock); every rank follows, so all train or none does."""
    decision = [decide() if state.is_main_process else None]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(decision)
    return bool(decision[0])


# ----------------------------------------------------------------------------- the loop


def run_sweep(sweep: Sweep) -> list[dict[str, Any]]:
    """Train this job's pending grid points one after another, skipping finished ones; print a leaderboard."""
    pending = begin_sweep(sweep)
    records = train_in_order(sweep.context, pending)
    finish_sweep(sweep)
    return records


def begin_sweep(sweep: Sweep) -> list[RunConfig]:
    """List this job's unfinished points, write sweep.json, and compute the shared start (once).

    Everything a sweep does once before its points train, whoever trains them (this loop, or
    the workers of `hf_soup.concurrency`).
    """

    context = sweep.context
    state = process_state()
    pending = [run for run in sweep.mine if not is_ingredient(context.output_dir / run.run_id)]
    blocked = [run.run_id for run in pending if (context.output_dir / run.run_id).exists()]
    if blocked:
        raise SoupError(f"{context.output_dir / blocked[0]}: exists but holds no valid ingredient.json; remove it")
    state.wait_for_everyone()  # every rank has listed the pending points before anything is written
    if state.is_main_process:
        context.output_dir.mkdir(parents=True, exist_ok=True)
        _write_sweep_file(sweep)
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
    records = []
    bar = tqdm(pending, desc="grid", unit="run", disable=not main, dynamic_ncols=True)
    for run in bar:
        record = train_unclaimed_point(run, context)
        if record is None:
            if main:
                bar.write(f"{run.run_id}: trained by another job, skipped")
            continue
        records.append(record)
        if main:
            bar.set_postfix_str(point_summary(record))
    bar.close()
    return records


def train_unclaimed_point(run: RunConfig, context: SweepContext) -> dict[str, Any] | None:
    """Train `run` unless another job holds its lock or has finished it (then None).

    The lock (`<run_id>.lock`, flock: released by the kernel if the process dies) is what lets
    shards, reruns and concurrent workers share one output folder without training a point twice.
    """

    state = process_state()
    dest = context.output_dir / run.run_id
    with contextlib.ExitStack() as stack:
        if not _agree(state, lambda: _try_lock(stack, dest) and not is_ingredient(dest)):
            return None
        if state.is_main_process:
            clear_temporaries_of(dest)
        record = run_grid_point(run, context)
        if state.is_main_process:
            Path(str(dest) + ".lock").unlink(missing_ok=True)
        return record


def point_summary(record: dict[str, Any]) -> str:
    """`<run id> heldout 0.6123`: what the grid progress bar shows for a finished point."""
    return f"{record['run_id']} heldout {record['metrics']['heldout']['primary']:.4f}"


def finish_sweep(sweep: Sweep) -> None:
    """Tidy `.work/` and write + print the leaderboard (main process)."""

    state = process_state()
    context = sweep.context
    if state.is_main_process:
        _remove_if_empty(context.output_dir / WORK_DIR)
        table = leaderboard(context.output_dir, context.sweep_id)
        if table:
            (context.output_dir / LEADERBOARD_FILE).write_text(table + "\n")
            print(table, flush=True)
    state.wait_for_everyone()


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def leaderboard(output_dir: Path, sweep_id: str | None = None) -> str:
    """A markdown table of the sweep's ingredients, best heldout score first."""
    records = []
    for child in sorted(Path(output_dir).iterdir()) if Path(output_dir).is_dir() else ():
        if child.is_dir() and not child.name.startswith(".") and is_ingredient(child):
            record = read_ingredient(child)
            if sweep_id is None or record.get("sweep_id") == sweep_id:
                records.append(record)
    if not records:
        return ""
    records.sort(key=lambda r: -r["metrics"]["heldout"]["primary"])
    axes = list(dict.fromkeys(k for r in records for k in r.get("grid_axes", ())))
    metric = records[0].get("primary_metric", "primary")
    header = ["#", "run id", *axes, f"heldout {metric}", f"test {metric}", "train s"]
    rows = []
    for rank, r in enumerate(records, 1):
        values = [r["seed"] if k == "seed" else r["hyperparameters"].get(k, "") for k in axes]
        test = r["metrics"].get("test", {}).get("primary")
        rows.append(
            [
                str(rank),
                r["run_id"],
                *map(_cell, values),
                f"{r['metrics']['heldout']['primary']:.4f}",
                f"{test:.4f}" if test is not None else "-",
                f"{r.get('train', {}).get('runtime_s', 0):.1f}",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in [header, *rows]]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)

"""A sweep's identity and its output folder: what every ingredient shares, and who may write there.

`sweep_identity` is what every ingredient of a folder shares (`sweep.json`'s `shared`; its hash is
`sweep_id`). `check_output_dir` refuses a folder holding another sweep's ingredients, since those
would not soup with these, naming the first flag, file or value that differs (`sweep_difference`).
`finished_folders` finds the points of a grid already trained there, so a rerun skips them.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from hf_soup.data import LOCATION_FIELDS
from hf_soup.errors import SoupError
from hf_soup.ingredient import INGREDIENT_FILE, is_ingredient
from hf_soup.sweep.arguments import SWEEP_DEFAULTS, FineTuneArguments, ParsedSweep
from hf_soup.sweep.grid import RunConfig, digest_of_run_id

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


def sweep_identity(task, base, family, model_args, data_args, finetune, splits, parsed, config_overrides) -> dict:
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
                    and jsonable(value) != _default(f)
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
        "fixed": {k: jsonable(v) for k, v in fixed.items()},
        "config_overrides": config_overrides,
    }


def _default(f: Any) -> Any:
    """A dataclass field's default, as JSON would show it (a flag equal to it changes nothing)."""
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    return jsonable(SWEEP_DEFAULTS.get(f.name, default))


def _parsed_learning_rate(parsed: ParsedSweep) -> float:
    return next(a for a in parsed.arguments if isinstance(a, TrainingArguments)).learning_rate


def jsonable(value: Any) -> Any:
    """A setting as JSON shows it: enums by their value, anything else unknown as text."""
    value = getattr(value, "value", value)  # enums (IntervalStrategy, OptimizerNames, ...)
    return value if isinstance(value, (bool, int, float, str, type(None), list, dict)) else str(value)


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
        k in recorded and json.dumps(recorded[k], default=str) == json.dumps(jsonable(v), default=str)
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

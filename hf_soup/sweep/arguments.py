"""The sweep's arguments: its dataclasses (flags and YAML keys) and the parser that fills them from a config
file and the command line, before any model or data is looked at.

`parse_sweep_args` is HfArgumentParser over `ARGUMENT_TYPES`; a config file's settings become the
parser's defaults, so flags override the file and every value goes through one type conversion.
Grid axes are parsed by `grid` and come back untyped in `ParsedSweep.axes`; `planning` checks and
types them against these fields and the model's config.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from hf_soup.data import FLAG_ALIASES, DataArguments
from hf_soup.errors import DefaultsHelpFormatter, SoupError
from hf_soup.models import ModelArguments
from hf_soup.sweep.grid import Axis, axes_from_mapping, normalise_key, parse_grid_flags

# TrainingArguments defaults the sweep changes; a flag or the config file overrides each of them.
SWEEP_DEFAULTS = {
    "save_strategy": "no",  # no checkpoints (and no optimizer state) unless asked for
    "per_device_eval_batch_size": 64,
}
# How long a shard waits for the shared start another live job is computing (it takes over at once
# when that job dies): a day, longer than any warm start should take, short of hanging for ever.
SHARED_START_TIMEOUT_S = 24 * 3600.0
# TrainingArguments fields that are about the sweep, not a run: never grid axes.
SWEEP_LEVEL_TRAINING_FIELDS = frozenset({"output_dir", "resume_from_checkpoint"})


@dataclass
class SweepArguments:
    """The grid itself. Field names double as CLI flags (HfArgumentParser) and YAML keys."""

    config: str | None = field(
        default=None,
        metadata={
            "help": "YAML file (fixed settings plus a `grid:` mapping), or a bundled example by task: rte, sst2, ..."
        },
    )
    grid: list[str] | None = field(
        default=None,
        metadata={"help": "axes: key=v1,v2 (any TrainingArguments, model-config or per-run field); overrides the file"},
    )
    num_samples: int | None = field(
        default=None, metadata={"help": "random search: draw this many points instead of the Cartesian product"}
    )
    search_seed: int = field(default=0, metadata={"help": "seed of the random search draws"})
    shard: str | None = field(default=None, metadata={"help": "i/n: train only every n-th point starting at i"})
    concurrent: str = field(
        default="1",
        metadata={"help": "K | auto: train K grid points at the same time on one device (worker processes)"},
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
    average_last_k: int = field(
        default=0,
        metadata={
            "help": "each ingredient = float64 average of its last K trajectory points (0/1: the final weights); "
            "steps T, T-d, ... with d = --average_every"
        },
    )
    average_every: int = field(
        default=0, metadata={"help": "steps between averaged points (0: T // (2K), the last half of training)"}
    )
    keep_trajectory: bool = field(
        default=False,
        metadata={
            "help": "with --average_last_k: keep the averaged points (weights only) under "
            "<output_dir>/.trajectory/<run id>/step-<n>/, to compare the final point with the average"
        },
    )
    precision: str = field(
        default="auto", metadata={"help": "auto (bf16 on GPUs that have it, else fp32) | fp32 | bf16 | fp16"}
    )
    group_by_length: bool = field(
        default=True, metadata={"help": "batch examples of similar length together (less padding, same epochs)"}
    )
    shared_start_timeout: float = field(
        default=SHARED_START_TIMEOUT_S,
        metadata={
            "help": "seconds a job waits for the LP-FT / warm start another job of the sweep is computing, "
            "then stops with an error (a job that dies meanwhile is taken over at once)"
        },
    )


PER_RUN_FINETUNE_FIELDS = (
    "freeze_layers",
    "early_stopping_patience",
    "early_stopping_threshold",
    "average_last_k",
    "average_every",
)
ARGUMENT_TYPES = (ModelArguments, DataArguments, FineTuneArguments, SweepArguments, TrainingArguments)
TRAINING_FIELDS = frozenset(f.name for f in fields(TrainingArguments) if f.init)


# ----------------------------------------------------------------------------- config + flags

BUNDLED_CONFIG_DIR = Path(__file__).parents[1] / "configs"  # shipped in the wheel (package data)
BUNDLED_PREFIX = "bundled:"


def bundled_configs() -> list[str]:
    """Names of the example configs shipped with the package: one per GLUE task."""
    return sorted(p.stem for p in BUNDLED_CONFIG_DIR.glob("*.yaml"))


def resolve_config(name: str) -> Path:
    """`--config` value -> the file: a path, else a bundled example named by its task.

    `--config rte` (or `rte.yaml`, or `bundled:rte` to skip the path lookup) names
    `hf_soup/configs/rte.yaml`, so a pip user needs no checkout. A path that exists always wins.
    """
    bundled_only = name.startswith(BUNDLED_PREFIX)
    key = name[len(BUNDLED_PREFIX) :] if bundled_only else name
    if not bundled_only and Path(key).is_file():
        return Path(key)
    stem = key[: -len(".yaml")] if key.endswith(".yaml") else key
    if "/" not in stem and "\\" not in stem and stem in bundled_configs():
        return BUNDLED_CONFIG_DIR / f"{stem}.yaml"
    raise SoupError(
        f"{name}: config file does not exist (a bundled config is named by its task: {', '.join(bundled_configs())})"
    )


def load_yaml_config(path: str) -> dict[str, Any]:
    """The settings of a config file or bundled config (`resolve_config`), keys normalised."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """YAML lets a later key silently replace an earlier one; a config that sets one twice is refused."""

        def construct_mapping(self, node, deep=False):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise SoupError(
                        f"{file}: {key!r} is set twice (lines {seen[key]} and {key_node.start_mark.line + 1}); keep one"
                    )
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    file = resolve_config(path)
    try:
        data = yaml.load(file.read_text(), Loader=UniqueKeyLoader) or {}  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise SoupError(f"{file}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise SoupError(f"{file}: must be a mapping of settings")
    return {normalise_key(str(k)): v for k, v in data.items()}


@dataclass
class ParsedSweep:
    """What the command line and config file say, before any model or data is looked at."""

    arguments: tuple[Any, ...]  # one instance per dataclass type, in the order given
    axes: dict[str, Axis]  # grid axes, values as written (coerce_axes gives them types)
    extra_fixed: dict[str, Any]  # config-file keys that are no dataclass field (model-config overrides)
    explicit: set[str]  # dataclass fields the user set (file or flags), for sweep identity
    source: str  # the config file, or "--grid" (names the culprit in errors)
    parser: Any = field(repr=False, default=None)

    def converters(self) -> dict[str, Callable[[Any], Any]]:
        """Per-key converters for dataclass fields, taken from the parser itself (one type system)."""
        out = {}
        for action in self.parser._actions:
            if action.dest and callable(action.type) and action.nargs in (None, "?"):
                out[action.dest] = _converter(action.type)
        return out


def _converter(kind: Callable[[str], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        return value if value is None else kind(value if isinstance(value, str) else str(value))

    return convert


ALIASES = {"model": "model_name_or_path", **FLAG_ALIASES}  # YAML keys; run_classification.py's names


def parse_sweep_args(
    argv: Sequence[str] | None,
    dataclass_types: Sequence[type],
    defaults: Mapping[str, Any] | None = None,
    prog: str | None = None,
) -> ParsedSweep:
    """HfArgumentParser over `dataclass_types`; the YAML file's settings become the parser's defaults,
    so flags override the file and every value goes through the same type conversion. `prog`
    names the command in `--help` (default: the script's name)."""
    import sys

    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        def error(self, message: str):  # argparse would print usage + message; we want one line
            raise SoupError(message)

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = Parser(
        dataclass_types, prog=prog, allow_abbrev=False, add_help=False, formatter_class=DefaultsHelpFormatter
    )
    if HELP_ALL in argv:
        parser.print_help()
        raise SystemExit(0)
    if "-h" in argv or "--help" in argv:
        print(short_help(parser, dataclass_types))
        raise SystemExit(0)
    field_names = {f.name for cls in dataclass_types for f in fields(cls) if f.init}
    parser.set_defaults(**(defaults or {}))
    config_path = _peek_config(argv)
    file_settings: dict[str, Any] = {}
    axes: dict[str, Axis] = {}
    extra: dict[str, Any] = {}
    if config_path:
        file_settings = load_yaml_config(config_path)
        config_path = str(resolve_config(config_path))  # errors name the file read
        axes = axes_from_mapping(file_settings.pop("grid", None), config_path)
        file_settings = {ALIASES.get(k, k): v for k, v in file_settings.items()}
        extra = {k: v for k, v in file_settings.items() if k not in field_names}
        parser.set_defaults(**{k: v for k, v in file_settings.items() if k in field_names and k != "config"})
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as err:  # unknown flags
        raise SoupError(" ".join(str(err).split())) from None
    flag_axes = parse_grid_flags(_find(parsed, SweepArguments).grid if _has(parsed, SweepArguments) else None)
    flags = _flags_given(argv, parser)
    file_fixed = {k for k in file_settings if k != "config"}
    conflicts = sorted((file_fixed & set(axes)) | (flags & set(flag_axes)))
    if conflicts:
        raise SoupError(f"{conflicts[0]!r} is set both as a fixed value and as a grid axis; keep one")
    # Flags override the file: a fixed flag removes the file's axis, a --grid axis the file's value.
    axes = {k: v for k, v in axes.items() if k not in flags}
    axes.update(flag_axes)
    extra = {k: v for k, v in extra.items() if k not in axes}
    explicit = ({k for k in file_fixed if k in field_names} | flags) - set(axes) - {"config"}
    return ParsedSweep(tuple(parsed), axes, extra, explicit, config_path or "--grid", parser)


HELP_ALL = "--help-all"
# The TrainingArguments a sweep is usually run with, shown by --help; --help-all lists all ~150.
COMMON_TRAINING_FLAGS = (
    "output_dir",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler_type",
    "seed",
    "save_strategy",
    "save_steps",
    "disable_tqdm",
)


def short_help(parser: Any, dataclass_types: Sequence[type]) -> str:
    """`--help`: hf_soup's own flags first, one section per argument dataclass, one entry per flag,
    then the few TrainingArguments most sweeps set; the full list is behind `--help-all`.

    Why: TrainingArguments has about 150 fields; listed in full they bury the flags that say which
    model, which data and which grid, which are the ones a new user needs."""
    import textwrap

    training = [cls for cls in dataclass_types if any(base.__name__ == "TrainingArguments" for base in cls.__mro__)]
    actions = {action.dest: action for action in reversed(parser._actions)}  # the first action of each dest

    def entry(name: str) -> list[str]:
        action = actions.get(name)
        if action is None or action.help == argparse.SUPPRESS:
            return []
        text = " ".join((action.help or "").split())
        if action.default not in (None, argparse.SUPPRESS) and "default" not in text.lower():
            text += f" (default: {action.default})"
        flag = f"  --{name}"
        lines = textwrap.wrap(text, 100 - 34) or [""]
        first = f"{flag:34s}{lines[0]}" if len(flag) < 33 else f"{flag}\n{'':34s}{lines[0]}"
        return [first, *(f"{'':34s}{line}" for line in lines[1:])]

    out = [
        f"usage: {parser.prog} [--config FILE] [--model M] [data flags] [--grid KEY=V1,V2 ...] "
        "[any TrainingArguments flag]",
        "",
        "Flags take dashes or underscores; a YAML --config holds the same keys plus a `grid:` mapping.",
    ]
    for cls in dataclass_types:
        if cls in training:
            continue
        title = (cls.__doc__ or cls.__name__).strip().split(". ")[0].rstrip(".")
        out += ["", f"{title} ({cls.__name__}):"]
        out += [line for f in fields(cls) if f.init for line in entry(f.name)]
    if training:
        total = sum(1 for cls in training for f in fields(cls) if f.init)
        out += [
            "",
            f"Training: the most used of the {total} TrainingArguments flags (any can be fixed or a --grid axis):",
        ]
        out += [line for name in COMMON_TRAINING_FLAGS for line in entry(name)]
    out += ["", f"-h, --help: this summary; {HELP_ALL}: every flag, all TrainingArguments included."]
    return "\n".join(out)


def _peek_config(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _flags_given(argv: Sequence[str], parser: Any) -> set[str]:
    given = set()
    for arg in argv:
        if arg.startswith("--"):
            action = parser._option_string_actions.get(arg.split("=", 1)[0])
            if action is not None:
                given.add(action.dest)
    return given


def _has(parsed: Sequence[Any], cls: type) -> bool:
    return any(isinstance(p, cls) for p in parsed)


def _find(parsed: Sequence[Any], cls: type) -> Any:
    return next(p for p in parsed if isinstance(p, cls))

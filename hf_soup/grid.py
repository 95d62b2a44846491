"""Grid spec (YAML config and/or `--grid` flags) -> ordered list of run configs with stable run ids.

    accelerate launch scripts/sweep.py --config configs/rte.yaml                  # Cartesian product
    accelerate launch scripts/sweep.py --config configs/rte.yaml --grid seed=0,1,2  # flags override the file
    ... --grid learning_rate=loguniform:1e-5:1e-4 seed=0,1 --num_samples 8        # random search
    ... --shard 2/4                                                                # 3rd of 4 jobs (SLURM array)

Axis values: `key=v1,v2,...` on the command line, a list in YAML (`learning_rate: [2e-5, 5e-5]`).
Random search (`num_samples: K`, as in the Model Soups paper) draws K points: list axes uniformly,
`uniform:LO:HI`, `loguniform:LO:HI` or `randint:LO:HI` (inclusive) ranges, seeded by
`search_seed`. An axis with a single value trains like a fixed setting, but it names the run ids
and stays out of the sweep's identity, so it can be widened later.

Run ids are readable and stable: `lr2e-05_ep3_seed0-3f9a1c2e` = every axis value of the point,
then a hash of them. A point's id depends on its own values only, never on which other axes vary,
so the same point gets the same id in every process, job and rerun: that is what lets a rerun skip
finished points and `--shard i/n` split the grid without coordination. Extending an axis (a third
learning rate) or widening a single-valued one (`seed=0` -> `seed=0,1`) keeps the ids of points
already trained. (Before every axis was named, single-valued axes were left out of the readable
part; the sweep still finds such folders by their hash, see `sweep.planning.finished_folders`.)
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hf_soup.errors import SoupError

RANGE_KINDS = ("uniform", "loguniform", "randint")

# Short names for readable run ids; other keys are shortened mechanically.
ABBREVIATIONS = {
    "learning_rate": "lr",
    "num_train_epochs": "ep",
    "seed": "seed",
    "per_device_train_batch_size": "bs",
    "gradient_accumulation_steps": "ga",
    "weight_decay": "wd",
    "warmup_steps": "wu",
    "max_steps": "steps",
    "lr_scheduler_type": "sched",
    "label_smoothing_factor": "ls",
    "max_grad_norm": "gn",
    "hidden_dropout_prob": "hdrop",
    "attention_probs_dropout_prob": "adrop",
    "classifier_dropout": "cdrop",
    "dropout_rate": "drop",
    "freeze_layers": "frz",
    "early_stopping_patience": "es",
    "data_seed": "dseed",
}
_MAX_READABLE = 80


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


@dataclass(frozen=True)
class Range:
    """A random-search distribution for one axis."""

    kind: str
    low: float
    high: float

    def sample(self, rng: random.Random) -> float | int:
        if self.kind == "randint":
            return rng.randint(int(self.low), int(self.high))
        if self.kind == "loguniform":
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return self.rounded(value)

    def rounded(self, value: float) -> float | int:
        """A drawn value as it is used and recorded: 4 significant digits (readable run ids), ints for randint.

        Also applied to values another sampler (Optuna, in hf_soup.hpo) draws from this range.
        """
        return round(value) if self.kind == "randint" else float(f"{value:.4g}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.low:g}:{self.high:g}"


Axis = list[Any] | Range


@dataclass(frozen=True)
class RunConfig:
    """One grid point: its stable id, position in the full grid, and the values it sets."""

    index: int
    run_id: str
    values: dict[str, Any]  # every per-run setting of this point (axes, in axis order)
    varying: tuple[str, ...]  # the keys whose values differ across the grid (the leaderboard's columns)


# ----------------------------------------------------------------------------- parsing values


def parse_scalar(text: str) -> Any:
    """'3' -> 3, '2e-5' -> 2e-05, 'true' -> True, 'none' -> None, anything else stays a string."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _parse_range(text: str, where: str) -> Range | None:
    kind, _, rest = text.partition(":")
    if kind not in RANGE_KINDS:
        return None
    parts = rest.split(":")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise SoupError(f"{where}: range {text!r} must be {kind}:LOW:HIGH with two numbers") from None
    if not low < high or (kind == "loguniform" and low <= 0):
        raise SoupError(
            f"{where}: range {text!r} needs 0 < LOW < HIGH"
            if kind == "loguniform"
            else f"{where}: range {text!r} needs LOW < HIGH"
        )
    return Range(kind, low, high)


def parse_axis(key: str, raw: Any, where: str) -> Axis:
    """One axis from a flag value ('2e-5,5e-5', 'loguniform:1e-5:1e-4') or a YAML value (list/scalar)."""
    if isinstance(raw, str):
        found = _parse_range(raw.strip(), f"{where}: {key}")
        if found is not None:
            return found
        values = [parse_scalar(part) for part in raw.split(",") if part.strip()]
    elif isinstance(raw, (list, tuple)):
        values = list(raw)
    elif raw is None:
        values = []
    else:
        values = [raw]
    if not values:
        raise SoupError(f"{where}: grid axis {key!r} has no values (empty grid)")
    return values


def normalise_key(key: str) -> str:
    """Flags accept dashes (`--max-steps`); keys are stored with underscores like dataclass fields."""
    return key.strip().replace("-", "_")


def parse_grid_flags(items: Sequence[str] | None) -> dict[str, Axis]:
    """`--grid learning_rate=2e-5,5e-5 seed=0,1` -> {key: axis}, in the order given."""
    axes: dict[str, Axis] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = normalise_key(key)
        if not sep or not key:
            raise SoupError(f"--grid: {item!r} is not key=value1,value2,...")
        if key in axes:
            raise SoupError(f"--grid: axis {key!r} given twice")
        axes[key] = parse_axis(key, raw, "--grid")
    return axes


def axes_from_mapping(mapping: Any, where: str) -> dict[str, Axis]:
    """The `grid:` block of a YAML config."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise SoupError(f"{where}: `grid` must be a mapping of key -> list of values")
    return {normalise_key(str(k)): parse_axis(str(k), v, where) for k, v in mapping.items()}


def coerce_axes(axes: dict[str, Axis], converters: Mapping[str, Callable[[Any], Any]]) -> dict[str, Axis]:
    """Give every value its field's type (YAML reads `2e-5` as a string; `3` for a float field -> 3.0)."""
    out: dict[str, Axis] = {}
    for key, axis in axes.items():
        convert = converters.get(key)
        if convert is None or isinstance(axis, Range):
            out[key] = axis
            continue
        try:
            out[key] = [convert(value) for value in axis]
        except (TypeError, ValueError) as err:
            raise SoupError(f"grid axis {key!r}: {err}") from None
    return out


def check_keys(keys: Iterable[str], valid: Iterable[str], where: str, *, what: str = "key") -> None:
    """Unknown key -> one line naming it, a close match if any, and every valid key."""
    valid = sorted(set(valid))
    for key in keys:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SoupError(f"{where}: unknown {what} {key!r}{hint}; valid: {', '.join(valid)}")


# ----------------------------------------------------------------------------- expansion


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "", text) or "x"


def _abbreviation(key: str) -> str:
    return ABBREVIATIONS.get(key) or "".join(part[:4] for part in key.split("_"))[:12]


def point_digest(values: Mapping[str, Any]) -> str:
    """8 hex digits of the hash of a point's values: its identity, whatever else the grid holds."""
    return hashlib.sha256(json.dumps(dict(values), sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_id_for(values: Mapping[str, Any]) -> str:
    """Readable part (every axis of the point, in axis order) + `point_digest(values)`.

    Every axis is named, single-valued or not, so a point's id depends on its own values only:
    widening `seed=0` to `seed=0,1` keeps the id of the `seed=0` point (`seed0-<hash>`), and a
    rerun skips it.
    """
    readable = "_".join(f"{_abbreviation(k)}{_format_value(v)}" for k, v in values.items())[:_MAX_READABLE]
    return f"{readable or 'run'}-{point_digest(values)}"


def digest_of_run_id(run_id: str) -> str:
    """The `point_digest` part of a run id (also of ids written before every axis was named)."""
    return run_id.rsplit("-", 1)[-1]


def expand_grid(axes: Mapping[str, Axis], *, num_samples: int | None = None, search_seed: int = 0) -> list[RunConfig]:
    """Cartesian product (first axis varies slowest) or `num_samples` random draws, in a fixed order."""
    ranges = [key for key, axis in axes.items() if isinstance(axis, Range)]
    if ranges and num_samples is None:
        raise SoupError(f"grid axis {ranges[0]!r} is a range ({axes[ranges[0]]}): pass --num_samples K to draw from it")
    if num_samples is not None and num_samples <= 0:
        raise SoupError(f"num_samples must be positive, got {num_samples} (empty grid)")
    if any(not isinstance(axis, Range) and not axis for axis in axes.values()):
        raise SoupError("empty grid: an axis has no values")
    keys = list(axes)
    if num_samples is None:
        points = [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]
    else:
        points = _draw(axes, num_samples, search_seed)
    varying = tuple(k for k in keys if len({json.dumps(p[k], default=str) for p in points}) > 1)
    runs = [RunConfig(i, run_id_for(p), p, varying) for i, p in enumerate(points)]
    duplicates = len(runs) - len({run.run_id for run in runs})
    if duplicates:
        raise SoupError(f"grid: {duplicates} grid point(s) repeat another (an axis lists the same value twice)")
    return runs


def _draw(axes: Mapping[str, Axis], count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    keys = list(axes)
    if not any(isinstance(axes[k], Range) for k in keys):  # only lists: sample the product without repeats
        product = list(itertools.product(*(axes[k] for k in keys)))
        if count > len(product):
            raise SoupError(f"num_samples {count} > the {len(product)} points of the grid")
        return [dict(zip(keys, product[i])) for i in sorted(rng.sample(range(len(product)), count))]
    points: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(count * 100):
        point = {k: axes[k].sample(rng) if isinstance(axes[k], Range) else rng.choice(axes[k]) for k in keys}
        fingerprint = json.dumps(point, sort_keys=True, default=str)
        if fingerprint not in seen:
            seen.add(fingerprint)
            points.append(point)
        if len(points) == count:
            return points
    raise SoupError(f"num_samples {count}: the ranges hold only {len(points)} distinct points")


def parse_shard(spec: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec or "")
    if not match or not int(match[1]) < int(match[2]):
        raise SoupError(f"--shard {spec!r}: expected i/n with 0 <= i < n (e.g. 0/4)")
    return int(match[1]), int(match[2])


def shard_runs(runs: Sequence[RunConfig], spec: str | None) -> list[RunConfig]:
    """Every n-th point from i (round robin keeps each shard's mix of learning rates, seeds, ...)."""
    if spec is None:
        return list(runs)
    index, count = parse_shard(spec)
    return [run for run in runs if run.index % count == index]


# ----------------------------------------------------------------------------- config + flags


BUNDLED_CONFIG_DIR = Path(__file__).with_name("configs")  # shipped in the wheel (package data)
BUNDLED_PREFIX = "bundled:"


def bundled_configs() -> list[str]:
    """Names of the configs shipped with the package: one per GLUE task, plus the task-free `soup_ready` design."""
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

    file = resolve_config(path)
    try:
        data = yaml.safe_load(file.read_text()) or {}
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


ALIASES = {"model": "model_name_or_path"}


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
    parser = Parser(dataclass_types, prog=prog, allow_abbrev=False)
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

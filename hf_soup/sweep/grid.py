"""Grid axes (a YAML `grid:` block and/or `--grid` flags) -> parsed, checked, typed, expanded into run configs.

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
already trained. Folders whose readable part names fewer axes are found by their hash
(`sweep.identity.finished_folders`).

The sweep's flags and config file are parsed in `sweep.arguments`; this module owns an axis.
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
from dataclasses import dataclass
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

        Also applied to values another sampler (Optuna, in hf_soup.sweep.hpo) draws from this range.
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


def config_converter(current: Any) -> Callable[[Any], Any]:
    """The type of a model-config override: floats stay floats (see models.config_override_keys); an unset
    field takes any literal."""

    def convert(value: Any) -> Any:
        if isinstance(current, float):
            return float(value)
        return parse_scalar(value) if isinstance(value, str) else value

    return convert


def check_axes(
    axes: dict[str, Axis],
    *,
    per_run: Iterable[str],
    sweep_wide: Iterable[str],
    converters: Mapping[str, Callable[[Any], Any]],
    where: str,
) -> dict[str, Axis]:
    """Every axis names a per-run setting (a sweep-wide field, or an unknown key, is one line), its values typed."""
    per_run, sweep_wide = set(per_run), set(sweep_wide)
    for key in axes:
        if key in sweep_wide and key not in per_run:
            raise SoupError(f"{where}: {key!r} is shared by the whole sweep and cannot be a grid axis")
    check_keys(axes, per_run, where, what="grid axis")
    return coerce_axes(axes, converters)


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

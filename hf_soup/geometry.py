"""The geometry of the ingredients: the angle between their updates from the shared start.

    python -m hf_soup.merge --ingredients runs/rte --output soups/rte              # soup.json `geometry`
    python -m hf_soup.merge --ingredients runs/rte --output soups/rte --pairwise_soups 10

Why: whether fine-tunes average well shows in the angle between their updates θᵢ − θ₀ from the
start θ₀ they share (Wortsman et al. 2022, "Model soups", figure 3: a two-ingredient soup's gain
over its pair grows as the angle approaches 90°). θ₀ is the point every ingredient of the sweep
was fine-tuned from, located exactly as model stock locates it (`hf_soup.anchors`): the sweep's
warm-start / LP-FT checkpoint when it used one, else the pretrained weights with the sweep's fixed
head initialisation (rebuilt bit-identically), else `--anchor DIR`. With none known, nothing is
guessed: soup.json says why the geometry was skipped.

The cosine between two updates is over every floating-point tensor the ingredients share with
the start (same name and shape), as one flattened vector. It is computed streaming: tensor by
tensor, in row chunks of at most `CHUNK_BYTES` for all N ingredients together, accumulating the
N × N Gram matrix of the updates in float64. So the merge holds no ingredient in memory, only the
scoring model, the start (one model when it has to be rebuilt; memory-mapped otherwise) and one
chunk: the merge's memory bound is unchanged.

`--pairwise_soups K` also scores K two-ingredient uniform soups (sampled with `--pairwise_seed` from
the N(N−1)/2 pairs; each costs one held-out scoring) and records each one's held-out gain over the
mean of its pair against the pair's angle; the card's plot draws them as the paper does.
"""

from __future__ import annotations

import itertools
import math
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_soup.errors import SoupError

if TYPE_CHECKING:  # the card imports this module for its text and plot: torch only where tensors are read
    import torch

KEY = "geometry"
PAIRWISE_KEY = "pairwise_soups"
# Bytes of float64 update chunks held at once, for all ingredients together (the only memory the
# computation adds beside the start): 64 MB is under a tenth of a BERT-base.
CHUNK_BYTES = 64 * 1024 * 1024


# ----------------------------------------------------------------------------- reading rows of tensors


class _Rows:
    """Row slices of one model's tensors without reading whole tensors: safetensors `get_slice`
    for files, plain slicing for in-memory state dicts (a rebuilt start) and pickled weights."""

    def __init__(self, source: Any):
        self.source = source
        self.handles: dict[str, Any] = {}
        files = getattr(source, "files", None)
        if files and not getattr(source, "pickled", False):
            from safetensors import safe_open

            for file in files:
                handle = safe_open(str(file), framework="pt", device="cpu")
                for name in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                    self.handles[name] = handle

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        handle = self.handles.get(name)
        if handle is not None:
            sliced = handle.get_slice(name)
            return sliced[start:stop] if len(sliced.get_shape()) else handle.get_tensor(name).reshape(1)
        tensor = self.source[name]
        return tensor[start:stop] if tensor.dim() else tensor.reshape(1)


def _is_float(source: Any, name: str) -> bool:
    import torch

    dtype = source.dtype(name) if hasattr(source, "dtype") and callable(source.dtype) else source[name].dtype
    return isinstance(dtype, torch.dtype) and dtype.is_floating_point


def _shape(source: Any, name: str) -> tuple[int, ...]:
    return (
        tuple(source.shape(name)) if hasattr(source, "shape") and callable(source.shape) else tuple(source[name].shape)
    )


def shared_float_tensors(ingredient: Any, start: Mapping[str, torch.Tensor]) -> list[str]:
    """The ingredient's floating-point tensors that the start has too, with the same shape."""
    names = []
    for name in ingredient:
        if name in start and _is_float(ingredient, name) and _shape(ingredient, name) == _shape(start, name):
            names.append(name)
    return names


def update_gram(
    checkpoints: Sequence[Any], start: Mapping[str, torch.Tensor], chunk_bytes: int = CHUNK_BYTES
) -> tuple[np.ndarray, list[str], int]:
    """(G with G[i, j] = ⟨θᵢ − θ₀, θⱼ − θ₀⟩ in float64, the tensors used, their element count), streamed.

    Each shared tensor is read in chunks of whole rows (at least one row), every ingredient's chunk
    minus the start's stacked into one (N × chunk) float64 block, and G += block · blockᵀ.
    """
    import torch

    n = len(checkpoints)
    names = shared_float_tensors(checkpoints[0], start)
    readers = [_Rows(checkpoint) for checkpoint in checkpoints]
    anchor = _Rows(start)
    gram = torch.zeros(n, n, dtype=torch.float64)
    elements = 0
    budget = max(1, chunk_bytes // (8 * n))
    for name in names:
        shape = _shape(start, name)
        rows = shape[0] if shape else 1
        per_row = math.prod(shape[1:]) if len(shape) > 1 else 1
        step = max(1, budget // max(per_row, 1))
        for first in range(0, rows, step):
            last = min(rows, first + step)
            base = anchor.rows(name, first, last).to(torch.float64).reshape(-1)
            block = torch.empty(n, base.numel(), dtype=torch.float64)
            for i, reader in enumerate(readers):
                block[i] = reader.rows(name, first, last).to(torch.float64).reshape(-1)
            block -= base
            gram += block @ block.T
            del block, base
        elements += math.prod(shape) if shape else 1
    return gram.numpy(), names, elements


def cosines_from_gram(gram: np.ndarray) -> list[list[float | None]]:
    """Cosine matrix from a Gram matrix; None where an update is zero (no direction)."""
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    n = len(norms)
    return [
        [
            float(np.clip(gram[i, j] / (norms[i] * norms[j]), -1.0, 1.0)) if norms[i] > 0 and norms[j] > 0 else None
            for j in range(n)
        ]
        for i in range(n)
    ]


def angle_degrees(cosine: float | None) -> float | None:
    return None if cosine is None else math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


# ----------------------------------------------------------------------------- the start θ₀


def start_identity(description: Mapping[str, Any], checkpoints: Sequence[Any]) -> dict[str, Any]:
    """What θ₀ was, for soup.json (which is published: a name, never this machine's absolute path).

    A sweep's shared start: the folder the ingredients recorded, relative to the sweep; the
    pretrained weights + head init: the base model's recorded name and the head's seed; `--anchor`:
    the folder's name. Each with the weights' sha256.
    """
    from hf_soup.anchors import BASE_WITH_HEAD

    record = getattr(checkpoints[0], "ingredient", None) or {}
    kind = description.get("kind")
    if kind == BASE_WITH_HEAD:
        name = (record.get("base_model") or {}).get("name_or_path")
        name = name if name and not Path(name).is_absolute() else Path(str(name or description.get("path"))).name
    elif kind == "explicit":
        name = Path(str(description.get("path"))).name
    else:
        name = (record.get("start") or {}).get("path") or Path(str(description.get("path"))).name
    identity = {"kind": kind, "name": name, "weights_sha256": description.get("weights_sha256")}
    if "head_init_seed" in description:
        identity["head_init_seed"] = description["head_init_seed"]
    return identity


def compute(checkpoints: Sequence[Any], anchor: Any, task: Any = None) -> dict[str, Any]:
    """soup.json `geometry` for located `anchor` (hf_soup.anchors.Anchor), loading it if needed."""
    from hf_soup.anchors import load_anchor

    if anchor.state is None:
        anchor = load_anchor(anchor, checkpoints, task)
    gram, names, elements = update_gram(checkpoints, anchor.state)
    identity = start_identity(anchor.description, checkpoints)
    del anchor  # a rebuilt start is a whole model: gone before anything else is allocated
    cosines = cosines_from_gram(gram)
    pairs = [cosines[i][j] for i, j in itertools.combinations(range(len(checkpoints)), 2)]
    known = [c for c in pairs if c is not None]
    return {
        "start": identity,
        "tensors": len(names),
        "parameters": elements,
        "ingredients": [checkpoint.name for checkpoint in checkpoints],
        "update_norms": [float(math.sqrt(max(gram[i, i], 0.0))) for i in range(len(checkpoints))],
        "cosines": cosines,
        "mean_pairwise_cosine": float(np.mean(known)) if known else None,
        "mean_pairwise_angle_degrees": float(np.mean([angle_degrees(c) for c in known])) if known else None,
    }


def for_merge(checkpoints: Sequence[Any], explicit_anchor: str | None, task: Any = None) -> dict[str, Any]:
    """The merge's `geometry` block: computed, or `{"skipped": why}` when no start is known (not an error:
    plain folders without ingredient.json have no recorded start to measure from)."""
    from hf_soup.anchors import locate_anchor

    if len(checkpoints) < 2:
        return {"skipped": "one ingredient: no pair to measure"}
    try:
        anchor = locate_anchor(checkpoints, explicit_anchor)
    except SoupError as err:
        print(f"note: geometry not computed: {err}", file=sys.stderr)
        return {"skipped": str(err).split(": ", 1)[-1]}
    return compute(checkpoints, anchor, task)


def check_flags(args: Any) -> None:
    """Refuse flag combinations before any work (one line, exit 2)."""
    if args.pairwise_soups < 0:
        raise SoupError(f"--pairwise_soups {args.pairwise_soups}: must be 0 (off) or a positive number of pairs")
    if args.pairwise_soups and args.skip_scoring:
        raise SoupError("--pairwise_soups: the two-ingredient soups are scored on held-out; drop --skip_scoring")
    if args.pairwise_soups and not args.geometry:
        raise SoupError("--pairwise_soups: plots each pair's gain against its angle; drop --no_geometry")


def add_to_merge(context: Any, args: Any, extra: dict[str, Any]) -> None:
    """The merge's hook, after the ingredients are scored and before any soup exists: soup.json
    `geometry` (and its `pairwise_soups`) into `extra`. Nothing with --no_geometry or --skip_scoring."""
    if not args.geometry or args.skip_scoring:
        return
    block = for_merge(context.checkpoints, args.anchor, context.task)
    if args.pairwise_soups and "skipped" not in block:
        block[PAIRWISE_KEY] = pairwise_soups(context, block, args.pairwise_soups, args.pairwise_seed)
    extra[KEY] = block


# ----------------------------------------------------------------------------- two-ingredient soups


def sample_pairs(n: int, requested: int, seed: int) -> list[tuple[int, int]]:
    """`requested` of the n(n−1)/2 pairs, drawn with `seed` (all of them when fewer), in index order."""
    pairs = list(itertools.combinations(range(n), 2))
    if requested >= len(pairs):
        return pairs
    return sorted(random.Random(seed).sample(pairs, requested))


def pairwise_soups(context: Any, geometry: dict[str, Any], requested: int, seed: int) -> dict[str, Any]:
    """Score sampled two-ingredient uniform soups on held-out: each one's gain over the mean of its
    pair, beside the pair's angle. `context`: hf_soup.recipes.context.RecipeContext (scorer, ingredients)."""
    from hf_soup.recipes.averaging import AverageView

    checkpoints, scorer, ingredients = context.checkpoints, context.scorer, context.ingredients
    heldout = [float(result.metrics["primary"]) for result in ingredients.split("heldout")]
    chosen = sample_pairs(len(checkpoints), requested, seed)
    cosines = geometry.get("cosines")
    rows = []
    for i, j in context.progress("pairwise soups")(chosen):
        soup = float(scorer.score_state(AverageView([checkpoints[i], checkpoints[j]]), "heldout").metrics["primary"])
        cosine = cosines[i][j] if cosines else None
        rows.append(
            {
                "a": checkpoints[i].name,
                "b": checkpoints[j].name,
                "cosine": cosine,
                "angle_degrees": angle_degrees(cosine),
                "soup": soup,
                "pair_mean": (heldout[i] + heldout[j]) / 2,
                "gain": soup - (heldout[i] + heldout[j]) / 2,
            }
        )
    block: dict[str, Any] = {
        "split": "heldout",
        "metric": "primary",
        "requested": requested,
        "pairs_total": len(checkpoints) * (len(checkpoints) - 1) // 2,
        "seed": seed,
        "pairs": rows,
    }
    angled = [(r["angle_degrees"], r["gain"]) for r in rows if r["angle_degrees"] is not None]
    if len(angled) >= 3 and len({a for a, _ in angled}) > 1 and len({g for _, g in angled}) > 1:
        from scipy.stats import spearmanr

        block["spearman_angle_gain"] = float(spearmanr([a for a, _ in angled], [g for _, g in angled]).statistic)
    return block


# ----------------------------------------------------------------------------- table, card, plot


def table_lines(soup: dict[str, Any]) -> list[str]:
    block = soup.get(KEY) or {}
    if "skipped" in block:
        return [f"geometry: not computed ({block['skipped']})"]
    if block.get("mean_pairwise_angle_degrees") is None:
        return []
    start = block["start"]
    lines = [
        f"geometry: mean angle between the ingredients' updates from the start ({start['kind']} {start['name']}): "
        f"{block['mean_pairwise_angle_degrees']:.1f}° (mean cosine {block['mean_pairwise_cosine']:.3f})"
    ]
    pairwise = block.get(PAIRWISE_KEY)
    if pairwise and pairwise["pairs"]:
        gains = [r["gain"] for r in pairwise["pairs"]]
        correlation = pairwise.get("spearman_angle_gain")
        lines.append(
            f"pairwise soups: {len(gains)} of {pairwise['pairs_total']} pairs, held-out gain over the pair's mean "
            f"{min(gains):+.4f} to {max(gains):+.4f}"
            + (f"; Spearman(angle, gain) {correlation:+.2f}" if correlation is not None else "")
        )
    return lines


def card_text(soup: dict[str, Any]) -> str:
    block = soup.get(KEY) or {}
    if block.get("mean_pairwise_angle_degrees") is None:
        return ""
    start = block["start"]
    text = (
        "### Geometry of the ingredients\n\n"
        f"The mean angle between the ingredients' updates from their shared start ({start['kind']}, "
        f"`{start['name']}`) is **{block['mean_pairwise_angle_degrees']:.1f}°** (mean cosine "
        f"{block['mean_pairwise_cosine']:.3f}, over {block['parameters']:,} weights in {block['tensors']} tensors). "
        "Updates at a small angle point the same way: their average stays close to each; the Model Soups "
        "paper found a soup's gain over its ingredients growing as the angle approaches 90°. The plot below "
        "shows every pair's cosine."
    )
    pairwise = block.get(PAIRWISE_KEY)
    if pairwise and pairwise["pairs"]:
        text += (
            f" {len(pairwise['pairs'])} two-ingredient soups were scored on held-out: the plot shows each one's "
            "gain over the mean of its pair against the pair's angle."
        )
    return text


def matrix_panel(soup: dict[str, Any], axes: Any) -> bool:
    """The cosine matrix of the updates (False: nothing to draw; `axes` None only asks)."""
    block = soup.get(KEY) or {}
    cosines = block.get("cosines")
    if not cosines or axes is None:
        return bool(cosines)
    values = np.array([[np.nan if c is None else c for c in row] for row in cosines], dtype=float)
    image = axes.imshow(values, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    axes.figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="cosine")
    n = len(cosines)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                if not np.isnan(values[i, j]):
                    axes.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize="x-small")
    ticks = list(range(n))
    axes.set_xticks(ticks)
    axes.set_yticks(ticks)
    short = [str(i + 1) for i in ticks]
    axes.set_xticklabels(short, fontsize="x-small")
    axes.set_yticklabels(short, fontsize="x-small")
    axes.set_title(f"cosine of the updates θᵢ − θ₀ (mean angle {block['mean_pairwise_angle_degrees']:.1f}°)")
    axes.set_xlabel("ingredient (order of soup.json geometry.ingredients)")
    return True


def pairwise_panel(soup: dict[str, Any], axes: Any) -> bool:
    """Each two-ingredient soup's held-out gain over its pair's mean against the pair's angle."""
    pairs = ((soup.get(KEY) or {}).get(PAIRWISE_KEY) or {}).get("pairs") or []
    points = [(r["angle_degrees"], r["gain"]) for r in pairs if r.get("angle_degrees") is not None]
    if not points or axes is None:
        return bool(points)
    axes.scatter([a for a, _ in points], [g for _, g in points], color="tab:blue", zorder=3)
    axes.axhline(0.0, color="0.7", linewidth=1)
    axes.set_xlabel("angle between the pair's updates (degrees)")
    axes.set_ylabel("held-out gain of the 2-soup over the pair's mean")
    axes.set_title("two-ingredient soups")
    axes.grid(True, linewidth=0.3)
    return True

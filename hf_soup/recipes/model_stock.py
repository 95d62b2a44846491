"""Model Stock (Jang et al., ECCV 2024): the ingredients' mean pulled towards their common start by the deltas' angle.

    from hf_soup.recipes.model_stock import model_stock_soup
    result = model_stock_soup(ingredients, anchor_state)
    result.state, result.ratios, result.cosines

The anchor (the point every ingredient was fine-tuned from) is found and loaded by the merge
(`hf_soup.anchors`: files and hashes) and handed to the run in `RecipeContext.anchor`; this module
reads no files.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hf_soup.recipes.averaging import Progress, StateDict, aliases_of, check_same_names, no_progress, single_threaded
from hf_soup.recipes.context import RecipeContext, RecipeOutcome


@dataclass
class ModelStockResult:
    state: dict[str, torch.Tensor]
    ratios: dict[str, float]  # t per mixed tensor (the weight of the ingredients' mean against the anchor)
    cosines: dict[str, float | None]  # the mean pairwise cosine of the deltas (None: not defined, see below)
    copied: list[str]  # tensors no ingredient changed (every delta exactly zero), copied as they are


def model_stock_ratio(cosine: float | None, n: int) -> float:
    """t = N·cos θ / (1 + (N − 1)·cos θ) (Jang et al. 2024, eq. 4), with cos θ clamped to [0, 1].

    N = 1, or no two non-zero deltas to measure an angle between (`cosine` None): t = 1, the mean
    itself (one fine-tune gives no information about where the centre lies). cos θ ≤ 0 (the fine-tunes
    moved in unrelated or opposite directions): t = 0, the anchor, which is where the formula goes as
    cos θ → 0 and stays finite (for cos θ < 0 it would leave [0, 1] and diverge at −1/(N − 1)).
    """
    if n < 1:
        raise ValueError("model stock needs at least one ingredient")
    if n == 1 or cosine is None:
        return 1.0
    c = min(max(float(cosine), 0.0), 1.0)
    return n * c / (1 + (n - 1) * c)


def _mean_pairwise_cosine(gram: torch.Tensor) -> float | None:
    """Mean of cos(δᵢ, δⱼ) over the pairs i < j whose deltas are both non-zero (None: no such pair)."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    live = torch.nonzero(norms > 0).flatten().tolist()
    cosines = [float(gram[i, j] / (norms[i] * norms[j])) for a, i in enumerate(live) for j in live[a + 1 :]]
    return sum(cosines) / len(cosines) if cosines else None


def model_stock_soup(
    sources: Sequence[StateDict],
    anchor: StateDict,
    *,
    progress: Progress = no_progress,
    chunk_size: int = 1 << 18,
) -> ModelStockResult:
    """Model Stock (Jang et al., ECCV 2024), per tensor: w = w₀ + t·mean(wᵢ − w₀), t from the deltas' angle.

    `anchor` (w₀) is the point every ingredient was fine-tuned from: the pretrained body plus the
    shared head initialisation, or the sweep's warm-start / LP-FT point. With δᵢ = wᵢ − w₀ and cos θ the
    mean pairwise cosine of the δᵢ, t = N·cos θ / (1 + (N − 1)·cos θ) (`model_stock_ratio`: N = 1,
    undefined angles and cos θ ≤ 0 are handled there). No held-out data is used: the soup sidesteps
    the held-out winner's curse of greedy selection.

    Tensors whose deltas are all exactly zero (frozen layers, untouched buffers) are copied from the
    first ingredient; non-float tensors too. Streaming: two passes per tensor over memory-mapped
    inputs, `chunk_size` elements at a time (the Gram matrix of the deltas in float64, then the
    output in float32), so the process holds the output, the anchor's pages and N chunk buffers,
    as the uniform soup does. Tied tensors are mixed once and stay tied.
    """
    names = check_same_names(sources)
    missing = next((name for name in names if name not in anchor), None)
    if missing is not None:
        raise ValueError(f"the anchor has no tensor {missing!r}")
    n = len(sources)
    aliases = aliases_of(sources[0])
    out: dict[str, torch.Tensor] = {}
    ratios: dict[str, float] = {}
    cosines: dict[str, float | None] = {}
    copied: list[str] = []
    with single_threaded():
        for name in progress(names):
            if name in aliases:
                continue
            first = sources[0][name]
            if not first.is_floating_point():
                out[name] = first.clone()
                continue
            base = anchor[name]
            if tuple(base.shape) != tuple(first.shape):
                raise ValueError(
                    f"the anchor's {name!r} has shape {list(base.shape)}, the ingredients' {list(first.shape)}"
                )
            flat = [source[name].reshape(-1) for source in sources]
            base_flat = base.reshape(-1)
            gram = torch.zeros(n, n, dtype=torch.float64)
            for start in range(0, first.numel(), chunk_size):
                chunk = slice(start, start + chunk_size)
                origin = base_flat[chunk].to(torch.float64)
                deltas = torch.stack([tensor[chunk].to(torch.float64) - origin for tensor in flat])
                gram += deltas @ deltas.T
            if not bool(gram.diagonal().any()):
                out[name] = first.clone()
                copied.append(name)
                continue
            cosine = _mean_pairwise_cosine(gram)
            ratio = model_stock_ratio(cosine, n)
            cosines[name], ratios[name] = cosine, ratio
            result = torch.empty(first.numel(), dtype=first.dtype)
            for start in range(0, first.numel(), chunk_size):
                chunk = slice(start, start + chunk_size)
                origin = base_flat[chunk].to(torch.float32)
                total = torch.zeros_like(origin)
                for tensor in flat:
                    total.add_(tensor[chunk].to(torch.float32) - origin)
                result[chunk] = total.mul_(ratio / n).add_(origin)
            out[name] = result.view(first.shape)
    for name, target in aliases.items():
        out[name] = out[target]
    return ModelStockResult({name: out[name] for name in names}, ratios, cosines, copied)


def model_stock_summary(result: ModelStockResult) -> dict[str, Any]:
    """soup.json's `model_stock` block: a summary of the per-tensor t, then every tensor's t and cos θ."""
    values = sorted(result.ratios.values())
    summary: dict[str, Any] = {"tensors_mixed": len(values), "tensors_copied": len(result.copied)}
    if values:
        summary.update(
            t_min=values[0],
            t_median=statistics.median(values),
            t_mean=statistics.fmean(values),
            t_max=values[-1],
            tensors_at_anchor=sum(1 for v in values if v == 0.0),
        )
    return {
        "summary": summary,
        "tensors": [
            {"name": name, "t": ratio, "cos": result.cosines.get(name)} for name, ratio in result.ratios.items()
        ],
        "copied": result.copied,
    }


def run(context: RecipeContext) -> RecipeOutcome:
    """Model stock against the sweep's common start; uses no held-out data.

    `context.anchor` is located and checked by the merge before any scoring (`hf_soup.anchors`); its
    tensors are loaded only now (`anchor.load`), so a rebuilt base + head is in memory only here.
    """
    if context.anchor is None:
        raise ValueError("model-stock needs its anchor in RecipeContext.anchor (hf_soup.anchors.locate_anchor)")
    anchor = (
        context.anchor if context.anchor.state is not None else context.anchor.load(context.checkpoints, context.task)
    )
    result = model_stock_soup(context.checkpoints, anchor.state, progress=context.progress("model stock"))
    description = anchor.description
    del anchor  # a rebuilt anchor is a whole model in memory: gone before the soup is scored
    summary = model_stock_summary(result)
    return RecipeOutcome(
        result.state,
        [1 / context.n] * context.n,
        context.score(result.state),
        row={"t_mean": summary["summary"].get("t_mean")},
        extra={"model_stock": {"anchor": description, **summary}},
    )


RUNS = {"model-stock": run}

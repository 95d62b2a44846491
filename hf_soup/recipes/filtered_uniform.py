"""The filtered uniform soup (as in DiWA, Ramé et al. 2022): the uniform soup of the ingredients worth keeping.

    from hf_soup.recipes.filtered_uniform import filtered_uniform_soup
    decision, state = filtered_uniform_soup(ingredients, heldout_scores, heldout_losses, chance=0.5, margin=0.05)
    decision.kept, decision.dropped

Dropped: the diverged, the ones at or below chance on held-out, the ones more than `margin` below the
best; keeping every ingredient gives exactly the uniform soup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hf_soup.recipes.averaging import Progress, StateDict, no_progress, weighted_average
from hf_soup.recipes.context import RecipeContext, RecipeOutcome

DEFAULT_FILTER_MARGIN = 0.05


@dataclass
class FilterDecision:
    kept: list[int]  # ingredient indices, best held-out first
    dropped: dict[int, str]  # index -> why


def filter_ingredients(
    scores: Sequence[float], losses: Sequence[float | None], *, chance: float, margin: float
) -> FilterDecision:
    """Which ingredients a filtered uniform soup keeps (DiWA, Ramé et al. 2022): not the diverged, not the far worse.

    Dropped: a NaN/infinite held-out score or loss (diverged); a held-out score at or below `chance`
    (the best a constant prediction scores on held-out: such a run learned nothing, and collapsed
    runs predicting one class land exactly there); a score more than `margin` below the best
    surviving one. The selection is on the held-out primary score, the unit users read, with a
    margin meant to be about the held-out noise, so only clearly worse runs go. If every
    ingredient is dropped the best by held-out score is kept alone (a soup of one is that model).
    """
    if len(scores) != len(losses):
        raise ValueError(f"{len(scores)} scores for {len(losses)} losses")
    if margin < 0:
        raise ValueError(f"margin must be non-negative, got {margin}")
    dropped: dict[int, str] = {}
    for i, (score, loss) in enumerate(zip(scores, losses)):
        if not math.isfinite(score) or (loss is not None and not math.isfinite(loss)):
            dropped[i] = "diverged (non-finite held-out score or loss)"
        elif score <= chance:
            dropped[i] = f"at or below chance on held-out ({score:.4f} <= {chance:.4f})"
    alive = [i for i in range(len(scores)) if i not in dropped]
    if alive:
        best = max(scores[i] for i in alive)
        for i in alive:
            if best - scores[i] > margin:
                dropped[i] = f"more than {margin:g} below the best on held-out ({scores[i]:.4f} vs {best:.4f})"
    kept = sorted((i for i in range(len(scores)) if i not in dropped), key=lambda i: -scores[i])
    if not kept:
        finite = [i for i in range(len(scores)) if math.isfinite(scores[i])] or [0]
        kept = [max(finite, key=lambda i: scores[i])]
    return FilterDecision(kept, {i: why for i, why in sorted(dropped.items()) if i not in kept})


def filtered_uniform_soup(
    sources: Sequence[StateDict],
    scores: Sequence[float],
    losses: Sequence[float | None],
    *,
    chance: float,
    margin: float,
    progress: Progress = no_progress,
) -> tuple[FilterDecision, dict[str, torch.Tensor]]:
    """`filter_ingredients`, then the uniform soup of the kept ones in input order: the arithmetic of
    `uniform_soup`, so keeping every ingredient gives exactly the uniform soup."""
    if len(scores) != len(sources):
        raise ValueError(f"{len(scores)} scores for {len(sources)} ingredients")
    decision = filter_ingredients(scores, losses, chance=chance, margin=margin)
    return decision, weighted_average([sources[i] for i in sorted(decision.kept)], progress=progress)


def run(context: RecipeContext) -> RecipeOutcome:
    """Uniform soup of the ingredients that did not diverge and are within the margin of the best (held-out primary)."""
    from hf_soup.stats import chance_score

    heldout = context.ingredients.split("heldout")
    chance = chance_score(context.task, context.scorer.references("heldout"))
    margin = float(getattr(context.args, "filter_margin", DEFAULT_FILTER_MARGIN))
    decision, state = filtered_uniform_soup(
        context.checkpoints,
        [float(result.metrics["primary"]) for result in heldout],
        [result.metrics.get("loss") for result in heldout],
        chance=chance,
        margin=margin,
        progress=context.progress("filtered uniform soup"),
    )
    names = [checkpoint.name for checkpoint in context.checkpoints]
    weights = [1 / len(decision.kept) if i in decision.kept else 0.0 for i in range(context.n)]
    kept = tuple(sorted(decision.kept))
    scores = context.score(state, known=context.averages.get(kept))
    context.averages.setdefault(kept, scores)
    extra = {
        "filtered_uniform": {
            "selection": "held-out primary score",
            "margin": margin,
            "chance": chance,
            "dropped": {names[i]: why for i, why in decision.dropped.items()},
        }
    }
    return RecipeOutcome(state, weights, scores, row={"kept": [names[i] for i in decision.kept]}, extra=extra)


RUNS = {"filtered-uniform": run}

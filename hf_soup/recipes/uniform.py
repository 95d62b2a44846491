"""The uniform soup, and checkpoint averaging (its float64 twin for the last checkpoints of one run).

    from hf_soup.recipes.uniform import uniform_soup, average_checkpoints
    state = uniform_soup([ckpt_a, ckpt_b, ckpt_c])         # mean of all ingredients (Wortsman et al. 2022)
    state = average_checkpoints(last_three)                # timm's avg_checkpoints: accumulated in float64

In a merge both are lazy views (`AverageView`): scoring streams them into the scoring model tensor
by tensor, and only the requested recipe's is read again, to be written. So the uniform baseline
of a greedy merge never holds a second model beside the scorer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hf_soup.recipes.averaging import AverageView, Progress, StateDict, no_progress, weighted_average
from hf_soup.recipes.context import RecipeContext, RecipeOutcome


def uniform_soup(sources: Sequence[StateDict], *, progress: Progress = no_progress) -> dict[str, torch.Tensor]:
    """The uniform soup: every ingredient weighted equally."""
    return weighted_average(sources, progress=progress)


def average_checkpoints(sources: Sequence[StateDict], *, progress: Progress = no_progress) -> dict[str, torch.Tensor]:
    """Checkpoint averaging (timm's avg_checkpoints): uniform, accumulated in float64."""
    return weighted_average(sources, accumulate_dtype=torch.float64, progress=progress)


def run(context: RecipeContext) -> RecipeOutcome:
    state = AverageView(context.checkpoints)
    scores = context.score(state, known=context.averages.get(tuple(range(context.n))))
    if scores is not None:
        context.averages[tuple(range(context.n))] = scores
    return RecipeOutcome(state, [1 / context.n] * context.n, scores)


def run_average_last(context: RecipeContext) -> RecipeOutcome:
    state = AverageView(context.checkpoints, accumulate_dtype=torch.float64)  # timm's avg_checkpoints
    return RecipeOutcome(state, [1 / context.n] * context.n, context.score(state))


RUNS = {"uniform": run, "average-last": run_average_last}

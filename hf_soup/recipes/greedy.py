"""The greedy soup (Wortsman et al. 2022, Recipe 1): add ingredients best first while held-out does not drop.

    from hf_soup.recipes.greedy import greedy_soup
    result = greedy_soup(ingredients, heldout_scores, evaluate=my_heldout_scorer)
    result.kept, result.trace, result.state

A running sum (`hf_soup.recipes.averaging.RunningSum`) makes each step one pass over one ingredient
plus one evaluation; `strict` keeps a candidate only when the score increases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from hf_soup.recipes.averaging import Progress, RunningSum, StateDict, check_same_names, no_progress
from hf_soup.recipes.context import RecipeContext, RecipeOutcome


@dataclass
class GreedyStep:
    """One row of the greedy trace: candidate `index` tried at `step` (1-based)."""

    step: int
    index: int
    score: float
    evaluation: Any
    accepted: bool
    soup_size: int


@dataclass
class GreedyResult:
    kept: list[int]  # ingredient indices in the order they were added
    trace: list[GreedyStep]
    state: dict[str, torch.Tensor]
    score: float  # the soup's held-out score (higher is better)
    evaluation: Any  # what `evaluate` returned for the final soup
    order: list[int] = field(default_factory=list)  # candidates, best held-out first


def greedy_soup(
    sources: Sequence[StateDict],
    scores: Sequence[float],
    evaluate: Callable[[StateDict], Any],
    *,
    key: Callable[[Any], float] = float,
    strict: bool = False,
    evaluations: Sequence[Any] | None = None,
    accumulate_dtype: torch.dtype = torch.float32,
    progress: Progress = no_progress,
    known: Callable[[tuple[int, ...]], Any | None] | None = None,
) -> GreedyResult:
    """Greedy soup (Wortsman et al. 2022, Recipe 1).

    `scores[i]` is ingredient i's held-out score (higher is better; pass -loss to select on loss).
    Candidates are tried best first (ties keep the given order). The first is the initial soup,
    with score `scores[first]` (no re-evaluation). Each later candidate is kept when
    `key(evaluate(soup with it)) >= current` (`>` with `strict`). `evaluate` receives a lazy
    mapping in the ingredients' dtype; `evaluations[i]` (optional) is recorded for step 1.
    `known(additions)` (optional) returns an evaluation already made of the soup of exactly these
    additions, in this order (bitwise the same weights), or None: that candidate is not evaluated.
    """
    if len(scores) != len(sources):
        raise ValueError(f"{len(scores)} scores for {len(sources)} ingredients")
    check_same_names(sources)
    order = sorted(range(len(sources)), key=lambda i: -scores[i])
    first = order[0]
    running = RunningSum(sources[first], accumulate_dtype)
    current = float(scores[first])
    current_evaluation = evaluations[first] if evaluations is not None else current
    trace = [GreedyStep(1, first, current, current_evaluation, True, 1)]
    kept = [first]
    for step, index in enumerate(progress(order[1:]), start=2):
        evaluation = known((*kept, index)) if known is not None else None
        if evaluation is None:
            evaluation = evaluate(running.mean_with(sources[index]))
        score = float(key(evaluation))
        accepted = score > current if strict else score >= current
        if accepted:
            running.add(sources[index])
            kept.append(index)
            current, current_evaluation = score, evaluation
        trace.append(GreedyStep(step, index, score, evaluation, accepted, running.count))
    return GreedyResult(kept, trace, running.mean(), current, current_evaluation, order)


def run(context: RecipeContext) -> RecipeOutcome:
    scorer, ingredients, checkpoints = context.scorer, context.ingredients, context.checkpoints
    greedy = greedy_soup(
        checkpoints,
        ingredients.selection,
        evaluate=lambda candidate: scorer.score_state(candidate, "heldout"),
        key=context.selection_key,
        strict=context.args.strict,
        evaluations=ingredients.split("heldout"),
        progress=context.progress("greedy soup candidates"),
        known=lambda additions: context.sequences.get(additions, {}).get("heldout"),
    )
    added = [greedy.trace[0].index]
    for step in greedy.trace[1:]:  # every candidate soup, by the additions that made it
        context.sequences.setdefault((*added, step.index), {"heldout": step.evaluation})
        if step.accepted:
            added.append(step.index)
    # held-out: the trace already scored exactly these weights (the lazy view is bitwise the soup);
    # a soup of the same additions scored before (one ingredient: the ingredient itself) is not scored again
    additions = tuple(greedy.kept)
    scores = context.score(greedy.state, known={"heldout": greedy.evaluation, **context.sequences.get(additions, {})})
    if scores is not None:
        context.sequences[additions] = scores
    trace = [
        {
            "step": step.step,
            "candidate": checkpoints[step.index].name,
            "heldout": step.evaluation.metrics,
            "accepted": step.accepted,
            "soup_size": step.soup_size,
        }
        for step in greedy.trace
    ]
    weights = [1 / len(greedy.kept) if i in greedy.kept else 0.0 for i in range(context.n)]
    return RecipeOutcome(
        greedy.state,
        weights,
        scores,
        row={"kept": [checkpoints[i].name for i in greedy.kept]},
        extra={"greedy_trace": trace},
    )


RUNS = {"greedy": run}

"""What a recipe's run receives and gives: one `RecipeContext` in, one `RecipeOutcome` out, for every recipe.

    from hf_soup.recipes.context import RecipeContext
    outcome = RECIPE_RUNS["greedy"].run(RecipeContext(args, checkpoints, task=task, scorer=scorer, ...))
    outcome.state, outcome.weights, outcome.scores, outcome.row, outcome.extra

A merge also has to score each soup the same way (held-out and test, logits kept), so the context
carries the scorer the merge built and the ingredients' scores; a recipe calls `context.score` and
never touches files. `scorer` and `ingredients` are None with --skip_scoring.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # scoring pulls in scipy/sklearn/datasets: imported only when a merge scores
    from hf_soup.scoring import Scorer, ScoreResult
    from hf_soup.tasks import Task

# The splits every model of a merge is scored on: held-out chooses, test is reported.
SCORED_SPLITS: tuple[str, ...] = ("heldout", "test")
CRITERIA = ("metric", "loss")

Scored = dict[str, "ScoreResult"]  # split -> logits + metrics of one model


def selection_score(metrics: Mapping[str, float], criterion: str) -> float:
    """Higher is better: the primary metric, or minus the loss."""
    return float(metrics["primary"]) if criterion == "metric" else -float(metrics["loss"])


def metrics_of(scored: Scored | None) -> dict[str, dict[str, float]]:
    """{split: metric dict} of a `Scored` (what soup.json records; logits stay in memory)."""
    return {split: result.metrics for split, result in (scored or {}).items()}


def progress_bar(description: str) -> Callable[[Iterable], Iterable]:
    """A tqdm wrapper on stderr (stdout holds the comparison table), gone when done."""

    def wrap(iterable: Iterable) -> Iterable:
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=description, leave=False, file=sys.stderr)

    return wrap


@dataclass
class IngredientScores:
    """Every ingredient scored on every split (logits kept for the ensemble), in input order."""

    scored: list[Scored]
    selection: list[float]  # held-out selection score (higher is better), by `criterion`
    calibration: list[dict[str, Any]] = field(default_factory=list)  # hf_soup.calibration, per ingredient

    @property
    def best(self) -> int:
        """The best single ingredient, chosen on held-out."""
        return int(np.argmax(self.selection))

    @property
    def oracle(self) -> int:
        """The best single ingredient on test: reported as an oracle, never used to choose."""
        return int(np.argmax([scored["test"].metrics["primary"] for scored in self.scored]))

    def split(self, name: str) -> list[ScoreResult]:
        return [scored[name] for scored in self.scored]


@dataclass
class RecipeContext:
    """What a recipe run may use. `scorer` and `ingredients` are None with --skip_scoring."""

    args: Any  # hf_soup.merge.MergeArguments (criterion, strict, learned_* settings)
    checkpoints: Sequence[Mapping[str, torch.Tensor]]  # hf_soup.checkpoints.Checkpoint, or plain state dicts
    task: Task | None = None
    scorer: Scorer | None = None
    ingredients: IngredientScores | None = None
    splits: tuple[str, ...] = SCORED_SPLITS
    anchor: Any = None  # model-stock: hf_soup.anchors.Anchor, located (and checked) before any scoring
    # Scores of equal-weight averages by the ingredients they average (input order): the very same
    # computation gives the very same tensors, so a filtered soup that keeps everything is not scored twice.
    averages: dict[tuple[int, ...], Scored] = field(default_factory=dict)
    # Scores of greedy running sums by the ingredients added, in the order added: the same additions
    # give bitwise the same soup, so the greedy soup on the other criterion re-scores no shared prefix.
    sequences: dict[tuple[int, ...], Scored] = field(default_factory=dict)

    def remember_ingredients(self) -> None:
        """A greedy soup that keeps one ingredient is bitwise that ingredient (its running sum is θ₀ + 0):
        the ingredient's scores, stored or computed once, stand for that soup's."""
        for index, scored in enumerate(self.ingredients.scored if self.ingredients else ()):
            self.sequences.setdefault((index,), scored)

    @property
    def n(self) -> int:
        return len(self.checkpoints)

    def progress(self, description: str) -> Callable[[Iterable], Iterable]:
        return progress_bar(description)

    def score(self, state: Mapping[str, torch.Tensor], known: Scored | None = None) -> Scored | None:
        """`state` swapped into the scoring model and scored on every split (`known` ones reused)."""
        if self.scorer is None:
            return None
        known = known or {}
        self.scorer.load_state(state)
        return {split: known[split] if split in known else self.scorer.score(split) for split in self.splits}

    def selection_key(self, result: ScoreResult) -> float:
        return selection_score(result.metrics, self.args.criterion)


@dataclass
class RecipeOutcome:
    """What one recipe run gives: the same shape for every recipe.

    `state` is the soup's weights (lazy or materialised; the merge writes it if this is the requested
    recipe, then drops it); `weights` one per ingredient in input order (soup.json
    `ingredients[].weight`); `scores` None when not scored; `row` extra keys of its `results` row;
    `extra` top-level soup.json keys it adds (greedy_trace, learned).
    """

    state: Mapping[str, torch.Tensor] | None
    weights: list[float]
    scores: Scored | None
    row: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

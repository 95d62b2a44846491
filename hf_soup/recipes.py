"""How the merge runs each recipe, and what every soup is compared with: one registry of recipe runs.

    from hf_soup.recipes import RECIPE_RUNS, RecipeContext, recipes_to_run
    for name in recipes_to_run("learned"):           # uniform, greedy (the baselines), then learned
        outcome = RECIPE_RUNS[name].run(context)       # a RecipeOutcome: state, weights, scores, extras

Why a registry: `hf_soup.soup` holds the recipes' maths on tensors; a merge also has to score each
soup the same way (held-out and test, logits kept), know which recipes are baselines of every scored
merge, which ones choose on held-out (and so cannot run with --skip_scoring), and what each adds to
soup.json. Each recipe is one function here returning the same `RecipeOutcome`, so `hf_soup.merge`
loops over them without a branch per recipe, and a new recipe is one entry:

    @register_run("model-stock")
    def _model_stock(context: RecipeContext) -> RecipeOutcome:
        state = model_stock(context.checkpoints, progress=context.progress("model stock"))
        return RecipeOutcome(state, [1 / context.n] * context.n, context.score(state))

What every soup is compared with (`baseline_rows`): the best single ingredient chosen on held-out,
the soft-vote logit ensemble (k× inference cost) and, labelled as an oracle, the best single on
test. Every row keeps its logits (`Scored`), so paired statistics (bootstrap intervals of a gain
over the best single) can be computed from the rows without scoring anything again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hf_soup.soup import (
    RECIPES,
    AverageView,
    filtered_uniform_soup,
    greedy_soup,
    learned_soup,
    model_stock_soup,
    model_stock_summary,
)

if TYPE_CHECKING:  # scoring pulls in scipy/sklearn/datasets: imported only when a merge scores
    from hf_soup.checkpoints import Checkpoint
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


# ----------------------------------------------------------------------------- the ingredients' scores


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


def score_ingredients(
    scorer: Scorer, checkpoints: Sequence[Checkpoint], criterion: str, splits: Sequence[str] = SCORED_SPLITS
) -> IngredientScores:
    """Swap each ingredient into the one scoring model and score it on every split."""
    scored = []
    for checkpoint in progress_bar("scoring ingredients")(checkpoints):
        scorer.load_state(checkpoint)
        scored.append({split: scorer.score(split) for split in splits})
    return IngredientScores(scored, [selection_score(s["heldout"].metrics, criterion) for s in scored])


# ----------------------------------------------------------------------------- result rows


@dataclass
class ResultRow:
    """One row of soup.json `results` (and of the printed table): a model and its scores.

    `scores` keeps the logits (split -> ScoreResult); `fields` are the row's other soup.json keys
    (greedy's `kept`, the ensemble's `members` and `inference_cost`, the oracle's `oracle`).
    """

    key: str
    scores: Scored
    name: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**({"name": self.name} if self.name else {}), **metrics_of(self.scores), **self.fields}


def baseline_rows(
    task: Task, checkpoints: Sequence[Checkpoint], ingredients: IngredientScores, scorer: Scorer
) -> list[ResultRow]:
    """Best single (held-out), the majority-class baseline, the logit ensemble, and the oracle best
    single (test, reported only)."""
    from hf_soup.ensemble import ensemble_logits, inference_cost
    from hf_soup.metrics import metrics_from_logits
    from hf_soup.scoring import ScoreResult

    best, oracle, n = ingredients.best, ingredients.oracle, len(checkpoints)
    ensemble = {}
    for split in ingredients.scored[0]:
        logits = ensemble_logits([r.logits for r in ingredients.split(split)], task.is_regression)
        ensemble[split] = ScoreResult(logits, metrics_from_logits(task, logits, scorer.references(split)))
    return [
        ResultRow("best_single", ingredients.scored[best], checkpoints[best].name),
        majority_row(task, ingredients, scorer),
        ResultRow("ensemble", ensemble, fields={"members": n, "inference_cost": inference_cost(n)}),
        ResultRow(
            "oracle_best_single",
            {"test": ingredients.scored[oracle]["test"]},
            checkpoints[oracle].name,
            {"oracle": True},
        ),
    ]


MAJORITY_KEY = "majority"
BEATS_MAJORITY_KEY = "best_single_vs_majority"


def majority_row(task: Task, ingredients: IngredientScores, scorer: Scorer) -> ResultRow:
    """A model that learned nothing: always the held-out split's most common label (regression: its
    mean), with the held-out class frequencies as logits (so its loss is the label entropy).

    The row also carries the best single ingredient's gain over it on every scored split, with the
    paired-bootstrap interval the soups' gains use (`best_single_vs_majority`), and
    `learned_nothing`: true when on some split that interval does not lie wholly above zero. That
    is the definition of "the best single does not clearly beat always guessing the majority
    label": the ingredients may not have learned the task (too few steps, a bad learning rate,
    labels that do not follow from the text), and a soup of them cannot be better.
    """
    from hf_soup.metrics import metrics_from_logits
    from hf_soup.scoring import ScoreResult
    from hf_soup.stats import bootstrap_gain

    heldout = np.asarray(scorer.references("heldout"))
    if task.is_regression:
        constant, fields = float(np.mean(heldout)) if len(heldout) else 0.0, {}
    else:
        counts = np.bincount(heldout.astype(int), minlength=task.num_labels).astype(np.float64)
        prior = np.log((counts + 1) / (counts.sum() + task.num_labels))  # add-one: no -inf for an absent label
        fields = {"label": task.id2label[int(np.argmax(counts))]}
    best = ingredients.scored[ingredients.best]
    scores, beats = {}, {}
    for split, scored in best.items():
        shape = np.asarray(scored.logits).shape
        logits = (
            np.full(shape, constant, dtype=np.float32)
            if task.is_regression
            else np.broadcast_to(prior.astype(np.float32), shape).copy()
        )
        references = scorer.references(split)
        scores[split] = ScoreResult(logits, metrics_from_logits(task, logits, references))
        beats[split] = bootstrap_gain(task, references, scored.logits, logits).to_dict()
    fields[BEATS_MAJORITY_KEY] = beats
    fields["learned_nothing"] = any(not gain["low"] > 0 for gain in beats.values())
    return ResultRow(MAJORITY_KEY, scores, fields=fields)


GAIN_KEY = "gain_over_best_single"
NOT_COMPARED = ("best_single", "oracle_best_single", MAJORITY_KEY)  # baselines, and a row chosen on test


def add_gains(task: Task, rows: Sequence[ResultRow], references: np.ndarray, split: str = "test") -> None:
    """Give every row its gain over the best single on `split`, with a paired-bootstrap interval.

    Same code as the benchmark (`hf_soup.stats`), so what a user sees for their soup is the
    statistic BENCHMARKS.md reports: the interval says how much of the gain the finite test set
    could be luck of the rows (not training randomness: one sweep cannot tell that).
    """
    from hf_soup.stats import bootstrap_gain

    best = next((row for row in rows if row.key == "best_single"), None)
    if best is None or split not in best.scores:
        return
    for row in rows:
        if row.key not in NOT_COMPARED and split in row.scores:
            gain = bootstrap_gain(task, references, row.scores[split].logits, best.scores[split].logits)
            row.fields[GAIN_KEY] = gain.to_dict()


# ----------------------------------------------------------------------------- the registry


@dataclass
class RecipeContext:
    """What a recipe run may use. `scorer` and `ingredients` are None with --skip_scoring."""

    args: Any  # hf_soup.merge.MergeArguments (criterion, strict, learned_* settings)
    checkpoints: list[Checkpoint]
    task: Task | None = None
    scorer: Scorer | None = None
    ingredients: IngredientScores | None = None
    splits: tuple[str, ...] = SCORED_SPLITS
    anchor: Any = None  # model-stock: hf_soup.anchors.Anchor, located (and checked) before any scoring
    # Scores of equal-weight averages by the ingredients they average (input order): the very same
    # computation gives the very same tensors, so a filtered soup that keeps everything is not scored twice.
    averages: dict[tuple[int, ...], Scored] = field(default_factory=dict)

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


@dataclass(frozen=True)
class RecipeRun:
    name: str
    run: Callable[[RecipeContext], RecipeOutcome]
    baseline: bool  # run on every scored merge (other recipes are compared with it), not only when asked
    needs_scores: bool  # chooses on held-out scores: refused with --skip_scoring
    alone: bool  # runs without the baselines (checkpoint averaging of one run)
    result_key: str  # its row in soup.json `results`


RECIPE_RUNS: dict[str, RecipeRun] = {}


def register_run(
    name: str,
    *,
    baseline: bool = False,
    needs_scores: bool = False,
    alone: bool = False,
    result_key: str | None = None,
) -> Callable:
    """Add a recipe run; its name must be a recipe of `hf_soup.soup.RECIPES` (the maths)."""
    if name not in RECIPES:
        raise ValueError(f"recipe run {name!r}: no such recipe in hf_soup.soup.RECIPES")

    def decorate(function: Callable[[RecipeContext], RecipeOutcome]) -> Callable[[RecipeContext], RecipeOutcome]:
        RECIPE_RUNS[name] = RecipeRun(name, function, baseline, needs_scores, alone, result_key or name)
        return function

    return decorate


def recipes_to_run(recipe: str, *, scored: bool = True, compare_all: bool = False) -> list[str]:
    """The runs of one merge, in order: the baselines (when scored), then the requested recipe;
    with `compare_all`, every recipe that mixes a sweep's ingredients (not checkpoint averaging)."""
    if RECIPE_RUNS[recipe].alone or not scored:
        return [recipe]
    chosen = [name for name, run in RECIPE_RUNS.items() if run.baseline or (compare_all and not run.alone)]
    return chosen + ([recipe] if recipe not in chosen else [])


# ----------------------------------------------------------------------------- the recipes


# Uniform and checkpoint averages are lazy views (hf_soup.soup.AverageView): scoring streams them
# into the scoring model tensor by tensor, and only the requested recipe's is read again, to be
# written. So the uniform baseline of a greedy merge never holds a second model beside the scorer.


@register_run("uniform", baseline=True)
def _uniform(context: RecipeContext) -> RecipeOutcome:
    state = AverageView(context.checkpoints)
    scores = context.score(state, known=context.averages.get(tuple(range(context.n))))
    if scores is not None:
        context.averages[tuple(range(context.n))] = scores
    return RecipeOutcome(state, [1 / context.n] * context.n, scores)


@register_run("average-last", alone=True, result_key="uniform")
def _average_last(context: RecipeContext) -> RecipeOutcome:
    state = AverageView(context.checkpoints, accumulate_dtype=torch.float64)  # timm's avg_checkpoints
    return RecipeOutcome(state, [1 / context.n] * context.n, context.score(state))


@register_run("greedy", baseline=True, needs_scores=True)
def _greedy(context: RecipeContext) -> RecipeOutcome:
    scorer, ingredients, checkpoints = context.scorer, context.ingredients, context.checkpoints
    greedy = greedy_soup(
        checkpoints,
        ingredients.selection,
        evaluate=lambda candidate: scorer.score_state(candidate, "heldout"),
        key=context.selection_key,
        strict=context.args.strict,
        evaluations=ingredients.split("heldout"),
        progress=context.progress("greedy soup candidates"),
    )
    # held-out: the trace already scored exactly these weights (the lazy view is bitwise the soup)
    scores = context.score(greedy.state, known={"heldout": greedy.evaluation})
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


@register_run("learned", needs_scores=True)
def _learned(context: RecipeContext) -> RecipeOutcome:
    """Fit the learned soup on held-out with the scorer's model and batches (cross-entropy / MSE)."""
    import torch.nn.functional as F

    args, scorer, task = context.args, context.scorer, context.task
    scorer.load_state(context.checkpoints[0])  # integer buffers and anything not mixed come from here
    batches = list(zip(scorer.batches("heldout"), scorer.batch_labels("heldout")))

    def loss_fn(logits: torch.Tensor, batch) -> torch.Tensor:
        labels = batch[1]
        if task.is_regression:
            return F.mse_loss(logits.float().reshape(-1), labels.float())
        return F.cross_entropy(logits.float(), labels.long())

    learned = learned_soup(
        context.checkpoints,
        scorer.model,
        batches,
        loss_fn,
        forward=lambda model, batch: scorer.logits_fn(model, batch[0]),
        granularity=args.learned_granularity,
        epochs=args.learned_epochs,
        lr=args.learned_lr,
        device=scorer.device,
        progress=context.progress("learned soup epochs"),
    )
    coefficients = learned.coefficients
    weights = (coefficients if coefficients.ndim == 1 else coefficients.mean(dim=1)).tolist()
    extra = {
        "learned": {
            "granularity": learned.granularity,
            "coefficients": coefficients.tolist(),
            "tensors": learned.mixed_names if learned.granularity == "layer" else None,
            "epochs": args.learned_epochs,
            "lr": args.learned_lr,
            "losses": learned.losses,
        }
    }
    # Its held-out score is measured on the split its coefficients were fitted on: not selection-free.
    row = {"fitted_on_heldout": True}
    return RecipeOutcome(learned.state, weights, context.score(learned.state), row=row, extra=extra)


@register_run("model-stock")
def _model_stock(context: RecipeContext) -> RecipeOutcome:
    """Model stock against the sweep's common start (`hf_soup.anchors`); uses no held-out data."""
    from hf_soup.anchors import find_anchor

    anchor = context.anchor or find_anchor(context.checkpoints, getattr(context.args, "anchor", None), context.task)
    if anchor.state is None:
        from hf_soup.anchors import load_anchor

        anchor = load_anchor(anchor, context.checkpoints, context.task)
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


DEFAULT_FILTER_MARGIN = 0.05


@register_run("filtered-uniform", needs_scores=True)
def _filtered_uniform(context: RecipeContext) -> RecipeOutcome:
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

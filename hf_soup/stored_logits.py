"""Logits stored beside an ingredient's weights, so the merge re-scores nothing the sweep already scored.

    <ingredient>/logits.safetensors        # one float32 (rows × labels) tensor per split, + a header

Why: a merge used to score every ingredient on held-out and test again, though the sweep (and
`IngredientExportCallback`) had just run exactly that computation to fill ingredient.json: on SNLI
that was about 2 of a merge's 3.5 minutes. Now whoever scores an ingredient for its record keeps the
logits, and the merge takes them instead of a forward pass when they provably are what its own
scorer would compute:
  * `weights_sha256`: the sha256 of the weight files they were computed from (the folder's
    `model.safetensors`, or its shards in index order), recomputed by the merge;
  * `fingerprint:<split>`: the sha256 of that split's tokenised model inputs, row by row, as the
    scorer feeds them (so the same rows, the same order, the same tokenizer, prompt and truncation);
  * `max_length` and `precision` (float32, or bfloat16 autocast as on a GPU): the merge's own.
Any mismatch, a missing split or a missing/unreadable file is not an error: that ingredient (or that
split) is scored as before, and soup.json `stored_logits` says how many were reused and why the
others were not. Extra test sets are never stored, so they are always scored.

The best single, the greedy order and the ensemble (the mean of the stored probabilities) then
cost no forward pass. The ensemble's inference cost is still measured on real forward passes
(`hf_soup.inference_cost`): when the ingredients' test passes were not run, each ingredient and the
soup are timed on the same sample of test rows (`--inference_timing_rows`; 0 skips it).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_soup.ingredient import LOGITS_FILE, files_sha256

if TYPE_CHECKING:
    from hf_soup.recipes.context import IngredientScores
    from hf_soup.scoring import Scorer

FORMAT = "hf_soup.logits"
FORMAT_VERSION = "1"
KEY = "stored_logits"  # soup.json
NON_INPUT_COLUMNS = ("label", "idx", "length")  # hf_soup.scoring's: bookkeeping, not model inputs


def split_fingerprint(dataset: Any) -> str:
    """sha256 of a tokenised split's model inputs, column by column and row by row."""
    digest = hashlib.sha256()
    for name in sorted(c for c in dataset.column_names if c not in NON_INPUT_COLUMNS):
        digest.update(name.encode() + b"\0")
        for row in dataset[name]:
            values = np.asarray(row, dtype=np.int64)
            digest.update(np.int64(values.size).tobytes() + values.tobytes())
    return digest.hexdigest()


def folder_weights_sha256(folder: str | Path) -> str | None:
    from hf_soup.checkpoints import weight_files

    files, _ = weight_files(folder)
    return files_sha256(files) if files else None


def precision_of(scorer: Any) -> str:
    return "bfloat16" if getattr(scorer, "autocast", False) else "float32"


@dataclass
class StoredLogits:
    """What one scoring of an ingredient produced: logits by split, and what they depend on."""

    logits: dict[str, np.ndarray]
    fingerprints: dict[str, str]
    max_length: int
    precision: str

    @classmethod
    def from_scorer(cls, scorer: Any, logits: Mapping[str, np.ndarray], max_length: int) -> StoredLogits:
        """From a Scorer that just scored these splits (its tokenised datasets give the fingerprints)."""
        return cls(
            {split: np.asarray(value, dtype=np.float32) for split, value in logits.items()},
            {split: split_fingerprint(scorer.datasets[split]) for split in logits},
            int(max_length),
            precision_of(scorer),
        )

    def write(self, folder: str | Path) -> Path:
        """Write `<folder>/logits.safetensors` for the weights already saved in `folder`."""
        from safetensors.numpy import save_file

        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "weights_sha256": folder_weights_sha256(folder) or "",
            "max_length": str(self.max_length),
            "precision": self.precision,
            **{f"fingerprint:{split}": value for split, value in self.fingerprints.items()},
        }
        path = Path(folder) / LOGITS_FILE
        save_file({split: np.ascontiguousarray(v) for split, v in self.logits.items()}, str(path), metadata=metadata)
        return path


def read_matching(
    checkpoint: Any, wanted: Mapping[str, str], max_length: int, precision: str
) -> tuple[dict[str, np.ndarray], str | None]:
    """({split: stored logits} for the `wanted` {split: fingerprint} that match, why not all of them)."""
    path = Path(checkpoint.path) / LOGITS_FILE
    if not path.is_file():
        return {}, "no stored logits"
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT:
                return {}, f"{LOGITS_FILE}: not {FORMAT}"
            if metadata.get("max_length") != str(max_length):
                return {}, f"max length {metadata.get('max_length')} stored, {max_length} now"
            if metadata.get("precision") != precision:
                return {}, f"scored in {metadata.get('precision')}, the merge scores in {precision}"
            if metadata.get("weights_sha256") != files_sha256(checkpoint.files):
                return {}, "the weights changed since they were scored"
            found, stale = {}, []
            for split, fingerprint in wanted.items():
                if metadata.get(f"fingerprint:{split}") == fingerprint and split in handle.keys():  # noqa: SIM118
                    found[split] = handle.get_tensor(split).astype(np.float32)
                else:
                    stale.append(split)
    except Exception as err:  # truncated or not safetensors: score instead
        return {}, f"{LOGITS_FILE}: unreadable ({type(err).__name__})"
    return found, (f"other rows or tokens for {', '.join(stale)}" if stale else None)


@dataclass
class Reuse:
    """soup.json `stored_logits`: how many ingredients' scores came from their stored logits."""

    ingredients: int = 0
    enabled: bool = True  # False with --no_reuse_logits
    reused: int = 0  # every stored split reused: no forward pass for this ingredient but extra test sets
    scored_test: list[bool] = field(default_factory=list)  # per ingredient: its test pass ran (and was timed)
    reasons: dict[str, str] = field(default_factory=dict)  # ingredient name -> why it was scored again

    def to_json(self) -> dict[str, Any]:
        return {
            "file": LOGITS_FILE,
            "ingredients": self.ingredients,
            "reused": self.reused,
            "scored": self.ingredients - self.reused,
            **({} if self.enabled else {"reuse": False}),
            **({"why_scored": self.reasons} if self.reasons else {}),
        }

    def sentence(self) -> str:
        return (
            f"stored logits: reused for {self.reused} of {self.ingredients} ingredients (no forward pass); "
            f"{self.ingredients - self.reused} scored"
        )


def score_ingredients(
    scorer: Scorer,
    checkpoints: Sequence[Any],
    criterion: str,
    splits: Sequence[str],
    max_length: int,
    *,
    reuse: bool = True,
) -> tuple[IngredientScores, Reuse]:
    """hf_soup.merge.rows.score_ingredients, taking each ingredient's stored logits where they match."""
    from hf_soup.metrics import metrics_from_logits
    from hf_soup.recipes.context import IngredientScores, progress_bar, selection_score
    from hf_soup.scoring import ScoreResult

    storable = [s for s in splits if not s.startswith("extra:")]
    has_files = reuse and any((Path(c.path) / LOGITS_FILE).is_file() for c in checkpoints)
    wanted = {split: split_fingerprint(scorer.datasets[split]) for split in storable} if has_files else {}
    summary = Reuse(ingredients=len(checkpoints), enabled=reuse)
    scored = []
    for checkpoint in progress_bar("scoring ingredients")(checkpoints):
        found, why = read_matching(checkpoint, wanted, max_length, precision_of(scorer)) if has_files else ({}, None)
        results = {
            split: ScoreResult(found[split], metrics_from_logits(scorer.task, found[split], scorer.references(split)))
            for split in found
        }
        missing = [split for split in splits if split not in results]
        if missing:
            scorer.load_state(checkpoint)
            results.update({split: scorer.score(split) for split in missing})
        if all(split in found for split in storable):
            summary.reused += 1
        elif why:
            summary.reasons[checkpoint.name] = why
        summary.scored_test.append("test" not in found)
        scored.append({split: results[split] for split in splits})
    if summary.reused:
        print(summary.sentence(), file=sys.stderr)
    return IngredientScores(scored, [selection_score(s["heldout"].metrics, criterion) for s in scored]), summary


# ----------------------------------------------------------------------------- the ensemble's inference cost

TIMING_SPLIT = "timing:test"


def sample_rows(lengths: Sequence[int], rows: int) -> list[int]:
    """`rows` test rows spread evenly over the length distribution (what a pass over test costs scales
    with the lengths), in their original order."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    if rows >= len(order):
        return list(range(len(order)))
    picks = np.linspace(0, len(order) - 1, rows).round().astype(int)
    return sorted(int(order[i]) for i in picks)


def inference_cost(context: Any, reuse: Reuse, timing_rows: int) -> dict[str, Any] | None:
    """soup.json `inference_speed`, always from real forward passes timed in this run.

    Every ingredient's test pass ran (nothing reused): from those passes and the soups', as before.
    Otherwise the ingredients' passes were never run, so each ingredient and the soup last scored
    (a soup is one model of the same architecture) are timed now on the same `timing_rows` test
    rows; 0 skips the measurement (None).
    """
    from hf_soup.inference_cost import measure

    scorer, task, checkpoints = context.scorer, context.task, context.checkpoints
    references = scorer.references("test")
    logits = [result.logits for result in context.ingredients.split("test")]
    if all(reuse.scored_test):
        seconds = scorer.seconds.get("test", [])
        return measure(seconds, len(checkpoints), len(references), logits, task.is_regression, scorer.device.type)
    if timing_rows <= 0:
        print("note: inference cost not measured (--inference_timing_rows 0)", file=sys.stderr)
        return None
    dataset = scorer.datasets["test"]
    lengths = dataset["length"] if "length" in dataset.column_names else [len(r) for r in dataset["input_ids"]]
    rows = sample_rows(lengths, timing_rows)
    scorer.datasets = {**scorer.datasets, TIMING_SPLIT: dataset.select(rows)}
    for _ in range(2):  # the model as the recipes left it: the last soup scored
        scorer.logits(TIMING_SPLIT)
    soups = scorer.seconds[TIMING_SPLIT][-2:]
    for checkpoint in checkpoints:
        scorer.load_state(checkpoint)
        scorer.logits(TIMING_SPLIT)
    ingredients = scorer.seconds[TIMING_SPLIT][-len(checkpoints) :]
    sampled = [value[rows] for value in logits]
    cost = measure(ingredients + soups, len(checkpoints), len(rows), sampled, task.is_regression, scorer.device.type)
    if cost is not None:
        cost["timed_on"] = f"{len(rows)} test rows spread over the lengths (the ingredients' logits were stored)"
    return cost


# ----------------------------------------------------------------------------- exporting from any Trainer

DEFAULT_MAX_LENGTH = 128  # the merge's default max length when nothing records one (hf_soup.merge)


def score_for_export(model: Any, tokenizer: Any, splits: Any, max_length: int, batch_size: int) -> StoredLogits:
    """What the merge's scorer computes for `model` on held-out and every test split of `splits`
    (hf_soup.data.TaskSplits): the same tokenisation, model family hooks and precision, on the
    model's own device; the model's train/eval mode is restored afterwards."""
    from hf_soup.models import scoring_hooks
    from hf_soup.scoring import Scorer, tokenize_for_scoring

    hooks = scoring_hooks(model.config, splits.task, tokenizer, max_length)
    hooks.pop("model_class", None)
    encoder, encoder_name = hooks.pop("encoder", None), hooks.pop("encoder_name", "classification")
    tokenized = tokenize_for_scoring(splits, tokenizer, max_length, encoder=encoder, encoder_name=encoder_name)
    training = model.training
    try:
        scorer = Scorer(
            model,
            splits.task,
            tokenized,
            batch_size=batch_size,
            pad_token_id=tokenizer.pad_token_id or 0,
            device=next(model.parameters()).device,
            **hooks,
        )
        names = [name for name in ("heldout", *splits.task.test_split_names) if name in tokenized]
        logits = {name: scorer.logits(name) for name in names}
    finally:
        model.train(training)
    return StoredLogits.from_scorer(scorer, logits, max_length)

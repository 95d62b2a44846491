"""Score a model, or a state dict swapped into it, on a tokenised split — fast, because greedy soup
scores the held-out split once per candidate.

    from hf_soup.scoring import Scorer, tokenize_for_scoring
    tokenized = tokenize_for_scoring(splits, tokenizer, max_length=128)   # heldout + test, cached
    scorer = Scorer(model, splits.task, tokenized, batch_size=64, pad_token_id=tokenizer.pad_token_id)
    result = scorer.score_state(checkpoint, "heldout")                   # .logits, .metrics

What makes it fast, and why:
  * tokenised once (`hf_soup.data.tokenize_splits`, cached on disk) and collated once: batches
    are built a single time per split, sorted by length so padding is minimal;
  * ONE model instance: a candidate soup's tensors are copied into its parameters in place, so no
    model is rebuilt or re-allocated per candidate;
  * `torch.inference_mode`, and bf16 autocast on a GPU.
`logits_fn(model, batch)` turns a batch into (n, num_labels) logits; the default is
`model(**batch).logits`. T5 text-to-text models plug in their own (e.g. `hf_soup.models.class_logits`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from hf_soup.errors import SoupError
from hf_soup.metrics import metrics_from_logits
from hf_soup.tasks import Task

LogitsFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
# Columns of a tokenised split that are bookkeeping, not model inputs.
NON_INPUT_COLUMNS = ("label", "idx", "length")
# Padding values by column; anything else pads with 0.
PAD_VALUES = {"labels": -100, "decoder_attention_mask": 0}


def default_logits_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).logits


def tokenize_for_scoring(
    splits: Any, tokenizer: Any, max_length: int, *, encoder: Any = None, encoder_name: str = "classification"
) -> Any:
    """Tokenise only the splits a merge scores (held-out and test), through the shared token cache.

    The train split is dropped first (it can be 100× larger and a merge never reads it); the
    cache key gets an `/eval` suffix so it never collides with a sweep's full-split cache entry.
    """
    from datasets import DatasetDict

    from hf_soup.data import tokenize_splits

    eval_only = replace(splits, splits=DatasetDict({k: v for k, v in splits.splits.items() if k != "train"}))
    return tokenize_splits(eval_only, tokenizer, max_length, encoder=encoder, encoder_name=f"{encoder_name}/eval")


@dataclass
class ScoreResult:
    logits: np.ndarray  # (n, num_labels) in the split's original row order, float32
    metrics: dict[str, float]  # hf_soup.metrics.metrics_from_logits: task metrics + primary + loss


@dataclass
class _PreparedSplit:
    batches: list[dict[str, torch.Tensor]]  # model inputs, already on the device
    order: np.ndarray  # row index of each prediction, in batch order
    references: np.ndarray  # labels in the original row order


def _ragged_columns(dataset: Any) -> dict[str, Any]:
    """{column: rows}, list columns as (flat values, offsets) numpy pairs read straight from Arrow.

    Why not `list(dataset[name])`: a Python list of lists of ints costs ~36 bytes a token (a pointer
    and an int object), over 100 MB transient at QQP-dev size (40k rows) and a fragmented heap
    afterwards; the flat arrays cost the tokens' own bytes. Columns of nested lists or other types
    stay Python lists.
    """
    import pyarrow as pa

    if not hasattr(dataset, "with_format"):  # not a datasets.Dataset: read it as it is
        return {name: list(dataset[name]) for name in dataset.column_names}
    table = dataset.with_format("arrow")[:]  # exactly these rows, in order (select/shuffle applied)
    columns: dict[str, Any] = {}
    for name in table.column_names:
        array = table.column(name).combine_chunks()
        flat = pa.types.is_list(array.type) or pa.types.is_large_list(array.type)
        if flat and pa.types.is_integer(array.type.value_type) and array.null_count == 0:
            # `offsets` index the unsliced `values`, so the pair is right for sliced arrays too
            columns[name] = (array.values.to_numpy(zero_copy_only=False), array.offsets.to_numpy())
        else:
            columns[name] = array.to_pylist()
    return columns


def _pad_flat(values: np.ndarray, offsets: np.ndarray, rows: np.ndarray, value: int) -> torch.Tensor:
    """`_pad` of the rows `rows` of a (values, offsets) column."""
    starts, ends = offsets[rows], offsets[rows + 1]
    out = np.full((len(rows), int((ends - starts).max())), value, dtype=np.int64)
    for i, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
        out[i, : end - start] = values[start:end]
    return torch.from_numpy(out)


def _pad(rows: list, value: int) -> torch.Tensor:
    width = max(len(row) for row in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.from_numpy(out)


class Scorer:
    """One model, many weight sets: scores states on tokenised splits with in-place weight swaps.

    `datasets` maps split names to tokenised `datasets.Dataset`s with a `label` column (and a
    `length` column, as `tokenize_splits` writes). Batches are built lazily, once per split.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        task: Task,
        datasets: Mapping[str, Any],
        *,
        batch_size: int = 64,
        max_batch_tokens: int | None = None,
        pad_token_id: int = 0,
        device: str | torch.device | None = None,
        logits_fn: LogitsFn = default_logits_fn,
        autocast: bool | None = None,
    ):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.task = task
        self.datasets = datasets
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.pad_token_id = pad_token_id
        self.logits_fn = logits_fn
        self.autocast = self.device.type == "cuda" if autocast is None else autocast
        self._prepared: dict[str, _PreparedSplit] = {}
        self.seconds: dict[str, list[float]] = {}  # wall time of each forward pass over a split (inference cost)
        self._targets = self.model.state_dict(keep_vars=True)
        self._checked_keys: frozenset[str] | None = None

    # -- weights

    def _check_keys(self, names: frozenset[str]) -> None:
        unknown = sorted(names - self._targets.keys())
        if unknown:
            raise SoupError(f"weights do not fit the scoring model: unexpected tensor {unknown[0]!r}")
        loaded_storages = {self._targets[name].data_ptr() for name in names}
        missing = [
            name
            for name in self._targets
            if name not in names and self._targets[name].data_ptr() not in loaded_storages
        ]
        if missing:
            raise SoupError(f"weights do not fit the scoring model: missing tensor {missing[0]!r}")
        self._checked_keys = names

    @torch.no_grad()
    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy `state` into the model's tensors in place (tied weights: through their one storage)."""
        names = frozenset(state.keys())
        if names != self._checked_keys:
            self._check_keys(names)
        read_into = getattr(state, "read_into", None)  # lazy soups write into the model, no temporary
        for name in state:
            target = self._targets[name]
            if read_into is not None and target.is_contiguous():
                try:
                    read_into(name, target)
                except ValueError as err:  # a shape that does not fit
                    raise SoupError(f"weights do not fit the scoring model: {err}") from None
                continue
            value = state[name]
            if tuple(value.shape) != tuple(target.shape):
                raise SoupError(f"weights do not fit the scoring model: {name!r} has shape {list(value.shape)}")
            target.copy_(value)

    # -- batches

    def _prepare(self, split: str) -> _PreparedSplit:
        if split in self._prepared:
            return self._prepared[split]
        if split not in self.datasets:
            raise SoupError(f"no split {split!r} to score (have {sorted(self.datasets)})")
        dataset = self.datasets[split]
        columns = _ragged_columns(dataset)
        inputs = [name for name in columns if name not in NON_INPUT_COLUMNS]
        if "length" in columns:
            lengths = np.asarray(columns["length"])
        elif isinstance(columns["input_ids"], tuple):
            lengths = np.diff(columns["input_ids"][1])
        else:
            lengths = np.asarray([len(r) for r in columns["input_ids"]])
        # Longest first: the biggest batch runs (and allocates) first, later ones reuse that memory.
        order = np.argsort(-lengths, kind="stable")
        batches = []
        for rows in self._batch_rows(order, lengths):
            batch = {}
            for name in inputs:
                pad = self.pad_token_id if name == "input_ids" else PAD_VALUES.get(name, 0)
                if isinstance(columns[name], tuple):
                    batch[name] = _pad_flat(*columns[name], rows, pad).to(self.device)
                    continue
                values = [columns[name][i] for i in rows]
                if isinstance(values[0], list):
                    batch[name] = _pad(values, pad).to(self.device)
                else:
                    batch[name] = torch.as_tensor(values).to(self.device)
            batches.append(batch)
        references = np.asarray(columns["label"])
        self._prepared[split] = _PreparedSplit(batches, order, references)
        return self._prepared[split]

    def _batch_rows(self, order: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        """Consecutive runs of the length-sorted rows: at most `batch_size` rows, and at most
        `max_batch_tokens` padded tokens (rows × the batch's longest row) when set.

        Why a token bound: on a CPU the activations of one batch share RAM with the two models a
        merge holds; BERT-base at 64 rows × 128 tokens takes ~385 MB of activations, at 2,048 tokens
        ~130 MB, scoring as fast there (the CPU is busy either way). `hf_soup.merge` sets it on CPUs.
        """
        runs, start = [], 0
        while start < len(order):
            size = self.batch_size
            if self.max_batch_tokens:  # rows are sorted longest first: the first row sets the padding
                size = max(1, min(size, self.max_batch_tokens // max(int(lengths[order[start]]), 1)))
            runs.append(order[start : start + size])
            start += size
        return runs

    def batches(self, split: str) -> list[dict[str, torch.Tensor]]:
        """The prepared model-input batches of `split` (length-sorted, padded, on the device)."""
        return self._prepare(split).batches

    def batch_labels(self, split: str) -> list[torch.Tensor]:
        """Labels aligned with `batches(split)` (for losses, e.g. the learned soup's)."""
        prepared = self._prepare(split)
        labels = torch.as_tensor(prepared.references[prepared.order]).to(self.device)
        return list(labels.split([len(next(iter(batch.values()))) for batch in prepared.batches]))

    def references(self, split: str) -> np.ndarray:
        return self._prepare(split).references

    # -- scoring

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def logits(self, split: str) -> np.ndarray:
        """Logits of the model as it is now, in the split's original row order."""
        prepared = self._prepare(split)  # outside inference mode: the learned soup backprops through these
        chunks = []
        started = time.perf_counter()
        with torch.inference_mode(), self._autocast():
            for batch in prepared.batches:
                chunks.append(self.logits_fn(self.model, batch).float().cpu())
        self.seconds.setdefault(split, []).append(time.perf_counter() - started)
        logits = torch.cat(chunks).numpy()
        if logits.ndim == 1:
            logits = logits[:, None]
        unsorted = np.empty_like(logits)
        unsorted[prepared.order] = logits
        return unsorted

    def score(self, split: str) -> ScoreResult:
        """Logits and metrics (task metrics, `primary`, `loss`) of the model as it is now."""
        logits = self.logits(split)
        return ScoreResult(logits, metrics_from_logits(self.task, logits, self.references(split)))

    def score_state(self, state: Mapping[str, torch.Tensor], split: str) -> ScoreResult:
        """Swap `state` into the model, then score `split`."""
        self.load_state(state)
        return self.score(split)


def build_scorer(
    model_dir: str,
    task: Task,
    datasets: Mapping[str, Any],
    *,
    model_class: Any = None,
    pad_token_id: int = 0,
    **kwargs: Any,
) -> Scorer:
    """A Scorer over a model built from `model_dir`'s config (float32; weights come via `load_state`).

    Built from the config rather than `from_pretrained` so the weights are read once, through
    `hf_soup.checkpoints` (which checks them), not twice.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    model_class = model_class or AutoModelForSequenceClassification
    config = AutoConfig.from_pretrained(model_dir)
    model = model_class.from_config(config, dtype=torch.float32)
    return Scorer(model, task, datasets, pad_token_id=pad_token_id, **kwargs)

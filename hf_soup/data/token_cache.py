"""Tokenise every split once and cache it on disk, keyed by tokenizer, length and the data's identity."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_soup.atomic import atomic_dir
from hf_soup.data.splits import TaskSplits
from hf_soup.errors import SoupError
from hf_soup.quiet import quiet_datasets
from hf_soup.tasks import Task

if TYPE_CHECKING:  # imported where used: `python -m hf_soup.merge --skip_scoring` never loads datasets
    from datasets import DatasetDict


# Bump when tokenised features change shape, so old caches are not reused.
TOKENIZE_CACHE_VERSION = 2


def default_cache_dir() -> Path:
    """`$HF_SOUP_CACHE`, else `$HF_HOME/hf_soup` (next to the user's other Hugging Face caches)."""
    if os.environ.get("HF_SOUP_CACHE"):
        return Path(os.environ["HF_SOUP_CACHE"])
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "hf_soup"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Identifies what a tokenizer does (its full serialised pipeline when it is a fast tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        pipeline = json.loads(backend.to_str())
        # Truncation/padding are per-call runtime state (set by the last call), not what it does.
        pipeline.pop("truncation", None)
        pipeline.pop("padding", None)
        state = json.dumps(pipeline, sort_keys=True)
    else:
        state = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(f"{type(tokenizer).__name__}|{state}".encode()).hexdigest()[:16]


def default_text_encoder(task: Task, tokenizer: Any, max_length: int):
    """Batch encoder for encoder classifiers: single sentence or pair, truncated, unpadded."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[name] for name in task.text_fields]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    return encode


def tokenize_splits(
    splits: TaskSplits,
    tokenizer: Any,
    max_length: int,
    *,
    encoder_name: str = "classification",
    encoder: Any = None,
    cache_dir: str | os.PathLike | None = None,
) -> DatasetDict:
    """Tokenise every split once (no padding: batches pad dynamically) and cache on disk.

    The cache key is (tokenizer, max_length, the data's identity: task description, source bytes,
    split arguments, which splits, encoder name), so a grid of N runs, the merge and the benchmarks
    all reuse one tokenisation, and different data never collides. Pass `encoder` (a batched map
    function) with a distinct `encoder_name` for other input formats, e.g. T5 text-to-text. Each
    example also gets `length` (tokens) for length-grouped batches.
    """
    key_parts = [
        TOKENIZE_CACHE_VERSION,
        tokenizer_fingerprint(tokenizer),
        max_length,
        splits.identity,
        sorted(splits.splits),
        encoder_name,
    ]
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:20]
    target = Path(cache_dir or default_cache_dir()) / "tokenized" / f"{splits.task.name}-{key}"
    if (target / "dataset_dict.json").is_file():
        try:
            from datasets import load_from_disk

            return load_from_disk(str(target))
        except Exception:  # a cache from an incompatible datasets version: rebuild below
            pass
    encoder = encoder or default_text_encoder(splits.task, tokenizer, max_length)

    def with_length(batch: dict[str, list]) -> dict[str, list]:
        encoded = dict(encoder(batch))
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    drop = list(splits.task.text_fields)
    with quiet_datasets():  # sub-second for the sizes a soup uses: no bars
        tokenized = splits.splits.map(with_length, batched=True, remove_columns=drop, desc="tokenizing")
    try:
        with atomic_dir(target, overwrite=True) as tmp, quiet_datasets():
            tokenized.save_to_disk(str(tmp))
    except SoupError:  # a read-only or full cache is not fatal: we still have the data in memory
        return tokenized
    from datasets import load_from_disk

    return load_from_disk(str(target))

"""Did your Trainer train on the rows `splits["train"]` holds? What makes "held-out was not trained on" true.

    from hf_soup.train_rows import check_train_rows
    check_train_rows(trainer.train_dataset, splits, tokenizer)
    # {"verified": True, "reason": "all 2000 training rows are rows of splits['train'] ..."}

Why: `IngredientExportCallback(splits=...)` records the held-out rows carved from `splits["train"]`,
and the merge then tells the soup's readers that held-out was never trained on. That holds only if
the Trainer trained on (a subset of) `splits["train"]`; a script that builds its own training set
(another file, another carve, `splits["train"]` concatenated with held-out) breaks it silently.

How: every training row must be a row of `splits["train"]`, compared by its text column(s) when the
Trainer's dataset still has them, else by token ids (the rows the model was fed, with trailing
padding stripped) against `splits["train"]` tokenized by the run's tokenizer, truncated to the
longest training row. Anything else (no dataset, an iterable dataset, custom preprocessing the
tokenizer alone does not reproduce) cannot be checked: the claim is recorded as unverified, and
the merge does not repeat it.
"""

from __future__ import annotations

from typing import Any

KEY = "train_rows"  # ingredient.json `split.train_rows`: {"verified": bool, "reason": str}


def _unverified(reason: str) -> dict[str, Any]:
    return {"verified": False, "reason": reason}


def _text_keys(dataset: Any, fields: tuple[str, ...]) -> list[tuple]:
    return list(zip(*(list(dataset[name]) for name in fields)))


def _token_keys(rows: list[list[int]], pad_id: int | None) -> list[tuple]:
    keys = []
    for ids in rows:
        ids = list(ids)
        while pad_id is not None and ids and ids[-1] == pad_id:
            ids.pop()
        keys.append(tuple(ids))
    return keys


def check_train_rows(dataset: Any, splits: Any, tokenizer: Any = None) -> dict[str, Any]:
    """{"verified", "reason"}: whether every row of the Trainer's `dataset` is a row of `splits["train"]`."""
    columns = getattr(dataset, "column_names", None)
    if dataset is None or not isinstance(columns, list):
        return _unverified("the Trainer's train_dataset is not a datasets.Dataset, so its rows cannot be compared")
    fields = tuple(splits.task.text_fields)
    train = splits["train"]
    if all(name in columns for name in fields):
        how, found, known = "text", _text_keys(dataset, fields), set(_text_keys(train, fields))
    elif "input_ids" in columns and tokenizer is not None:
        rows = list(dataset["input_ids"])
        longest = max((len(ids) for ids in rows), default=0)
        texts = [list(train[name]) for name in fields]
        try:
            encoded = tokenizer(*texts, truncation=True, max_length=max(longest, 1))["input_ids"]
        except Exception as err:  # a tokenizer that does not take these texts: nothing to compare with
            return _unverified(f"the run's tokenizer could not encode splits['train'] ({type(err).__name__})")
        pad = getattr(tokenizer, "pad_token_id", None)
        how, found, known = "token ids", _token_keys(rows, pad), set(_token_keys(encoded, pad))
    else:
        return _unverified(
            f"the Trainer's train_dataset has neither the text column(s) {list(fields)} nor input_ids with a "
            "tokenizer, so its rows cannot be compared with splits['train']"
        )
    outside = sum(key not in known for key in found)
    if outside:
        return _unverified(
            f"{outside} of the {len(found)} rows the Trainer trained on are not rows of splits['train'] (compared by "
            f"{how}): it may have trained on held-out rows"
        )
    return {
        "verified": True,
        "reason": f"all {len(found)} training rows are rows of splits['train'] (compared by {how})",
    }


def merge_reason(name: str, record: dict[str, Any]) -> str | None:
    """Why the merge cannot call held-out disjoint for this ingredient (None: nothing against it)."""
    rows = ((record or {}).get("split") or {}).get(KEY)
    if not isinstance(rows, dict) or rows.get("verified"):
        return None
    return f"unverified: {name} was exported by IngredientExportCallback, which found that {rows.get('reason')}"

"""The scorer of a merge: the held-out and test splits the ingredients recorded, tokenised, and one scoring model.

    task, described, scorer = prepare_scorer(args, data, checkpoints)

The data comes from the ingredients' records (or the flags, for plain folders); nothing is chosen here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from hf_soup.checkpoints import Checkpoint
from hf_soup.errors import SoupError
from hf_soup.extra_tests import RECORD_KEY as EXTRA_TESTS_KEY
from hf_soup.extra_tests import load_extra_tests, parse_extra_tests, tokenize_extra_tests
from hf_soup.merge.arguments import CPU_MAX_BATCH_TOKENS, DEFAULT_MAX_SEQ_LENGTH, MergeArguments, MergeDataArguments
from hf_soup.train_rows import merge_reason as train_rows_reason


def prepare_scorer(args: MergeArguments, data: MergeDataArguments, checkpoints: list[Checkpoint]):
    """(task, split description, Scorer) for the held-out and test splits the ingredients were scored on.

    The data comes from the first ingredient.json (`hf_soup.data.load_recorded`: its data
    description, or a format-1 task name + split source), or from the flags for plain folders. The
    model family (encoder, T5 classification, T5 text-to-text) is read from the first ingredient's
    config: `hf_soup.models.scoring_hooks` picks the model class, the logits function and the
    input encoding it was trained with.
    """
    from transformers import AutoConfig, AutoTokenizer

    from hf_soup.data import load_recorded
    from hf_soup.models import check_task_labels, scoring_hooks
    from hf_soup.scoring import build_scorer, tokenize_for_scoring

    first = next((c for c in checkpoints if c.ingredient), None)
    record = first.ingredient if first else None
    where = f"{(first or checkpoints[0]).path}/ingredient.json" if first else str(checkpoints[0].path)
    splits, heldout = load_recorded(record, data, where)
    heldout = every_ingredient_disjoint(heldout, checkpoints, len(splits["heldout"]))
    for note in splits.notes:
        print(f"note: {note}", flush=True)
    config = AutoConfig.from_pretrained(checkpoints[0].path)
    check_task_labels(config, splits.task, fine_tuned=True)  # plain folders: the inferred labels must be the model's
    # Extra test sets: read and checked before any tokenising; scored like test splits, never chosen on.
    extras, extra_tests = load_extra_tests(parse_extra_tests(args.extra_test_files), splits.task, splits.arguments)
    recorded_length = ((record or {}).get("hyperparameters") or {}).get("max_seq_length")
    max_length = (
        data.max_seq_length or recorded_length or splits.arguments.get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH
    )
    tokenizer_source = next((c for c in checkpoints if c.tokenizer_files()), None)
    if tokenizer_source is None:
        raise SoupError(f"{checkpoints[0].path}: no tokenizer files in any ingredient; cannot score")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source.path)
    hooks = scoring_hooks(config, splits.task, tokenizer, max_length)
    encoder = hooks.pop("encoder", None)
    tokenized = tokenize_for_scoring(
        splits, tokenizer, max_length, encoder=encoder, encoder_name=hooks.pop("encoder_name", "classification")
    )
    if extras:
        tokenized = {**tokenized, **tokenize_extra_tests(extras, splits.task, tokenizer, max_length, encoder)}
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    max_tokens = args.max_batch_tokens or (CPU_MAX_BATCH_TOKENS if torch.device(device).type == "cpu" else None)
    scorer = build_scorer(
        str(checkpoints[0].path),
        splits.task,
        tokenized,
        pad_token_id=tokenizer.pad_token_id or 0,
        batch_size=args.batch_size,
        max_batch_tokens=max_tokens,
        device=device,
        **hooks,
    )
    described = {
        **splits.describe(),
        "data": splits.description(),
        "heldout_disjoint": heldout.disjoint,
        "heldout_disjoint_reason": heldout.reason,
        **({EXTRA_TESTS_KEY: extra_tests} if extra_tests else {}),
        "max_length": max_length,  # not in soup.json's split: keys the stored logits (hf_soup.stored_logits)
    }
    return splits.task, described, scorer


def every_ingredient_disjoint(heldout: Any, checkpoints: list[Checkpoint], size: int) -> Any:
    """The first record's disjointness holds for the soup only if every ingredient records the same
    held-out rows: a plain folder, or a callback ingredient without `splits=`, may have trained on them."""
    if not heldout.disjoint:
        return heldout
    for checkpoint in checkpoints:
        record = checkpoint.ingredient or {}
        split = record.get("split") or {}
        if not (split.get("fingerprint") or ((record.get("data") or {}).get("heldout") or {}).get("fingerprint")):
            what = "is a plain model folder (no ingredient.json)" if not record else "records no held-out split"
            return replace(
                heldout,
                disjoint=False,
                reason=f"{checkpoint.path.name} {what}, so it may have trained on some of the {size} held-out rows",
            )
        if (unverified := train_rows_reason(checkpoint.path.name, record)) is not None:  # callback: trained on?
            return replace(heldout, disjoint=False, reason=unverified)
    return heldout

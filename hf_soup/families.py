"""Which model family a saved folder is, from its config alone, and the input format each reads.

    from hf_soup.families import family_of, t5_prompt
    family_of(json.load(open("soup/config.json")))   # "encoder" | "t5-classification" | "t5-text2text"
    t5_prompt("rte", ("sentence1", "sentence2"), ("A cat sleeps.", "An animal sleeps."))
    # -> "rte sentence1: A cat sleeps. sentence2: An animal sleeps."

Why a module of its own: the sweep and the merge (through `hf_soup.models`) and the model card and
publisher all need the same two rules — how a folder says its family, and T5's GLUE prompt — and
the card must not import torch to know them. The family decides how a folder is loaded
(AutoModelForSequenceClassification, or AutoModelForSeq2SeqLM for text-to-text), what a user feeds
it (a sentence or a pair for encoders; the prompt string for T5 families) and the Hub pipeline.
Imports nothing (config objects and plain config.json dicts both work).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ENCODER = "encoder"
T5_CLASSIFICATION = "t5-classification"
T5_TEXT2TEXT = "t5-text2text"
FAMILIES = (ENCODER, T5_CLASSIFICATION, T5_TEXT2TEXT)

# Written into a text2text model's config.json (what class_logits needs to read label scores).
LABEL_WORDS_KEY = "hf_soup_label_words"
LABEL_TOKEN_IDS_KEY = "hf_soup_label_token_ids"


def _field(config: Any, key: str) -> Any:
    return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)


def family_of(config: Any) -> str:
    """The family of a saved model: a transformers config or its config.json as a dict."""
    if _field(config, LABEL_WORDS_KEY):
        return T5_TEXT2TEXT
    return T5_CLASSIFICATION if _field(config, "is_encoder_decoder") else ENCODER


def t5_prompt(task_name: str, fields: Sequence[str], texts: Sequence[str]) -> str:
    """T5's GLUE input format, e.g. "rte sentence1: … sentence2: …" (what T5 families are trained on)."""
    return " ".join([task_name, *(f"{name}: {text}" for name, text in zip(fields, texts))])

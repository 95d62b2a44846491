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

What differs between families is data, not code: `FAMILY_TABLE` holds one row per family (loader
class, input format, pipeline tag, final head layer, label words), and the sweep, the merge, the
temperature fold and the card read the row instead of testing the family's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ENCODER = "encoder"
T5_CLASSIFICATION = "t5-classification"
T5_TEXT2TEXT = "t5-text2text"
FAMILIES = (ENCODER, T5_CLASSIFICATION, T5_TEXT2TEXT)

# Written into a text2text model's config.json (what class_logits needs to read label scores).
LABEL_WORDS_KEY = "hf_soup_label_words"
LABEL_TOKEN_IDS_KEY = "hf_soup_label_token_ids"

# Input formats: one text or a pair as the task has them (`text`/`text_pair`), or T5's GLUE prompt
# string ("rte sentence1: … sentence2: …", `t5_prompt`). The name is also the token cache's encoder name.
TEXT = "classification"
T5_PROMPT = "t5-prompt"


@dataclass(frozen=True)
class Family:
    """What one model family means for loading, feeding, scoring and publishing a model."""

    name: str
    loader: str  # the transformers Auto class a folder of this family loads with
    encoder_decoder: bool  # needs a T5-style (encoder-decoder) base model
    input_format: str  # TEXT or T5_PROMPT
    pipeline_tag: str  # the Hub pipeline the published model answers in
    # The linear layers whose output may be the class logits, as transformers' heads name them (first
    # match wins); empty: no classification layer (label words through the LM head).
    head_layers: tuple[str, ...]
    eos_pooled: bool = False  # classifies from the hidden state at <eos>: every input must end with one

    @property
    def label_words(self) -> bool:
        """Emits a label word; class scores are the logits of the label words' first tokens."""
        return not self.head_layers


FAMILY_TABLE: dict[str, Family] = {
    row.name: row
    for row in (
        Family(
            ENCODER,
            loader="AutoModelForSequenceClassification",
            encoder_decoder=False,
            input_format=TEXT,
            pipeline_tag="text-classification",
            head_layers=("classifier.out_proj", "classifier", "score"),  # RoBERTa/ELECTRA, BERT, others
        ),
        Family(
            T5_CLASSIFICATION,
            loader="AutoModelForSequenceClassification",  # T5ForSequenceClassification
            encoder_decoder=True,
            input_format=T5_PROMPT,
            pipeline_tag="text-classification",
            head_layers=("classification_head.out_proj",),
            eos_pooled=True,
        ),
        Family(
            T5_TEXT2TEXT,
            loader="AutoModelForSeq2SeqLM",
            encoder_decoder=True,
            input_format=T5_PROMPT,
            pipeline_tag="text2text-generation",
            head_layers=(),
        ),
    )
}
assert tuple(FAMILY_TABLE) == FAMILIES


def family_row(name: str) -> Family:
    """The table row of a family name (one of FAMILIES)."""
    try:
        return FAMILY_TABLE[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}: one of {', '.join(FAMILIES)}") from None


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

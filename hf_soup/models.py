"""Model families for the sweep and the merge: load a base model for a task, and read class logits.

    python -m hf_soup.models PATH_OR_HUB_ID --task rte   # which family, labels, new head, layers

Three families, one contract (`class_logits(model, batch) -> [batch, num_labels]`), so scoring,
greedy soup and the ensemble treat every model alike:
  * "encoder"            BERT, RoBERTa, DeBERTa, ELECTRA, MiniLM… via AutoModelForSequenceClassification;
  * "t5-classification"  T5ForSequenceClassification (a head on the decoder's final <eos> state);
  * "t5-text2text"       AutoModelForSeq2SeqLM trained to emit a label word; its class logits are
                         the logits of the label words' first tokens at the first decoder step.
T5 inputs are T5's GLUE prompt ("rte sentence1: … sentence2: …"); encoders get sentence pairs.

Why a fixed head initialisation: soups average weights, and two heads initialised differently do
not average into anything useful. The head is initialised under `head_init_seed` (identical across
a grid) inside a forked RNG, so the run's own seed changes only data order and dropout.

A folder is self-describing: text2text folders carry `hf_soup_label_words` and
`hf_soup_label_token_ids` in config.json; `load_ingredient_model` needs nothing else.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hf_soup.errors import SoupError, cli_main
from hf_soup.families import (  # the family rule lives there (the card reads it without torch); re-exported
    ENCODER,
    FAMILIES,
    LABEL_TOKEN_IDS_KEY,
    LABEL_WORDS_KEY,
    T5_CLASSIFICATION,
    T5_PROMPT,
    T5_TEXT2TEXT,  # noqa: F401 (re-exported: callers name the families through hf_soup.models)
    TEXT,
    family_of,
    family_row,
    t5_prompt,
)
from hf_soup.ingredient import weights_sha256
from hf_soup.quiet import quiet_transformers
from hf_soup.tasks import Task, get_task

_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "spiece*", "*.tiktoken"]


@dataclass
class ModelArguments:
    """Which pretrained model, which family, and how its head starts. Field names double as CLI flags."""

    model_name_or_path: str | None = field(
        default=None, metadata={"aliases": ["--model"], "help": "local folder or Hub id of the pretrained model"}
    )
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)"})
    model_family: str = field(
        default="auto",
        metadata={"help": "auto | encoder | t5-classification | t5-text2text (auto: T5-style -> t5-classification)"},
    )
    head_init_seed: int = field(
        default=42, metadata={"help": "seed of the new classification head; identical across the grid"}
    )
    label_words: list[str] | None = field(
        default=None, metadata={"help": "t5-text2text: one word per label (default: the task's label names)"}
    )
    allow_pickle: bool = field(
        default=False, metadata={"help": "accept pickled pytorch_model.bin weights (loaded with weights_only=True)"}
    )


@dataclass
class BaseModel:
    """The pretrained model every grid point starts from, resolved to a local folder once per sweep."""

    name_or_path: str
    local_dir: Path
    revision: str | None
    weights_sha256: str | None
    config: Any  # transformers.PretrainedConfig

    def describe(self) -> dict[str, Any]:
        """The `base_model` block of ingredient.json."""
        return {"name_or_path": self.name_or_path, "revision": self.revision, "weights_sha256": self.weights_sha256}


def looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else that does not exist is a missing local folder."""
    return name.startswith((".", "/", "~", os.sep)) or name.endswith(("/", os.sep)) or name.count("/") > 1


def resolve_base_model(args: ModelArguments) -> BaseModel:
    """Find the model's files (a local folder, or one Hub snapshot) and read its config.

    Hub models are snapshotted once here, so the weights hash and revision recorded in every
    ingredient name exactly the files that were fine-tuned.
    """
    from transformers import AutoConfig

    name = args.model_name_or_path
    if not name:
        raise SoupError("no model given: pass --model PATH_OR_HUB_ID (or `model:` in the config)")
    path = Path(name).expanduser()
    revision = args.model_revision
    if path.is_dir():
        local_dir = path.resolve()
    elif path.exists() or looks_like_path(name):
        raise SoupError(f"{name}: model folder does not exist")
    else:
        local_dir, revision = _snapshot(name, args)
    if not (local_dir / "config.json").is_file():
        raise SoupError(f"{local_dir}: no config.json (not a Hugging Face model folder)")
    _check_weight_files(local_dir, args.allow_pickle)
    try:
        config = AutoConfig.from_pretrained(local_dir)
    except Exception as err:  # an unknown model_type, a malformed config.json, ...
        raise SoupError(f"{local_dir}/config.json: cannot be read ({type(err).__name__}: {err})") from err
    return BaseModel(name, local_dir, revision, weights_sha256(local_dir), config)


def _snapshot(repo_id: str, args: ModelArguments) -> tuple[Path, str | None]:
    from huggingface_hub import snapshot_download

    patterns = _WEIGHT_PATTERNS + (["*.bin"] if args.allow_pickle else [])
    try:
        folder = Path(snapshot_download(repo_id, revision=args.model_revision, allow_patterns=patterns))
    except Exception as err:  # offline, unknown repo, gated, ...: one line, not a traceback
        raise SoupError(
            f"{repo_id}: not a local folder and not available from the Hub ({type(err).__name__}: {err})"
        ) from err
    # Cache layout: .../snapshots/<commit sha>/ — the exact revision that was fine-tuned.
    revision = folder.name if folder.parent.name == "snapshots" else args.model_revision
    return folder, revision


def _check_weight_files(folder: Path, allow_pickle: bool) -> None:
    if any(folder.glob("*.safetensors")):
        return
    if any(folder.glob("*.bin")):
        if allow_pickle:
            return
        raise SoupError(
            f"{folder}: holds only pickled weights (*.bin); pass --allow_pickle to load them with "
            "torch.load(weights_only=True), or convert them to safetensors"
        )
    raise SoupError(f"{folder}: no model weights (*.safetensors) found")


# ----------------------------------------------------------------------------- families


def resolve_family(requested: str, config: Any) -> str:
    """`auto` -> t5-classification for encoder-decoder configs, encoder otherwise; check the rest."""
    if requested not in ("auto", *FAMILIES):
        raise SoupError(f"model_family: {requested!r} is not one of auto, {', '.join(FAMILIES)}")
    seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    if requested == "auto":
        return T5_CLASSIFICATION if seq2seq else ENCODER
    if seq2seq and not family_row(requested).encoder_decoder:
        others = " or ".join(name for name in FAMILIES if family_row(name).encoder_decoder)
        raise SoupError(f"model_family: {config.model_type} is encoder-decoder; use {others}")
    if family_row(requested).encoder_decoder and not seq2seq:
        raise SoupError(f"model_family: {requested} needs an encoder-decoder (T5-style) model, not {config.model_type}")
    return requested


def _has_default_labels(config: Any) -> bool:
    return all(re.fullmatch(r"LABEL_\d+", str(name)) for name in (config.id2label or {}).values())


def check_task_labels(config: Any, task: Task, *, fine_tuned: bool = False) -> None:
    """Refuse a model fine-tuned for other labels (its head would be silently reused or dropped).

    `fine_tuned`: the model is scored as it is (a merge's ingredient), so even with default
    `LABEL_i` names its head must have one output per label of the task (scikit-learn would
    otherwise fail on a label it has no class for, or a class would never be predicted)."""
    if _has_default_labels(config):
        outputs = int(getattr(config, "num_labels", 0) or 0)
        if fine_tuned and not family_row(family_of(config)).label_words and outputs != task.num_labels:
            raise SoupError(
                f"{getattr(config, '_name_or_path', 'model')}: its head has {outputs} outputs (labels "
                f"{[str(config.id2label[i]) for i in sorted(config.id2label, key=int)]}), task {task.name} has "
                f"{task.num_labels} labels; pass the data it was fine-tuned on"
            )
        return
    have = [str(config.id2label[i]) for i in sorted(config.id2label, key=int)]
    want = list(task.id2label.values())
    if [name.lower() for name in have] != [name.lower() for name in want]:
        raise SoupError(
            f"{getattr(config, '_name_or_path', 'model')}: its head is fine-tuned for labels {have}, task "
            f"{task.name} needs {want}; start from a base (not fine-tuned) checkpoint"
        )


def config_override_keys(config: Any) -> dict[str, Any]:
    """Model-config fields a sweep may fix or vary, with their current values: the model's own
    float (or unset) fields, i.e. dropouts, layer-norm eps, init scales. Integer, string and bool
    fields are sizes, ids, activations or switches that shape the architecture; generic fields
    (return_dict, use_cache, ...) are not training knobs."""
    from transformers import PretrainedConfig

    generic = set(PretrainedConfig().to_dict())
    return {
        key: value
        for key, value in config.to_dict().items()
        if key not in generic and (value is None or isinstance(value, float)) and not key.startswith("hf_soup_")
    }


# ----------------------------------------------------------------------------- inputs


def default_label_words(task: Task) -> tuple[str, ...]:
    """T5's own GLUE targets: the label names ("entailment", "not_entailment", ...)."""
    if task.is_regression:
        raise SoupError(f"t5-text2text does not support the regression task {task.name}; use t5-classification")
    return tuple(task.label_names)


def label_token_ids(tokenizer: Any, words: list[str] | tuple[str, ...], task: Task) -> list[int]:
    """First token of each label word; they must differ, since class scores are read from them."""
    if len(words) != task.num_labels:
        raise SoupError(f"label_words: {len(words)} words for the {task.num_labels} labels of {task.name}")
    ids = []
    for word in words:
        tokens = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise SoupError(f"label_words: {word!r} tokenizes to nothing")
        ids.append(int(tokens[0]))
    if len(set(ids)) != len(ids):
        raise SoupError(f"label_words: {list(words)} share a first token; pass --label_words with distinct words")
    return ids


def t5_prompt_encoder(task: Task, tokenizer: Any, max_length: int):
    """Batch encoder for T5 families: T5's GLUE prompt, e.g. "rte sentence1: … sentence2: …".

    Any task reads the same shape: its recorded prompt (`Task.t5_prompt`: the preset's name, or
    the name derived from the user's data, e.g. "news") and its text column names.
    """

    def encode(batch: dict[str, list]) -> dict[str, list]:
        columns = [batch[name] for name in task.text_fields]
        prompts = [t5_prompt(task.t5_prompt, task.text_fields, texts) for texts in zip(*columns)]
        return tokenizer(prompts, truncation=True, max_length=max_length)

    return encode


def encode_splits(splits: Any, tokenizer: Any, family: str, max_length: int, cache_dir: Any = None) -> Any:
    """Tokenise a task's splits the way `family` reads them (cached; see hf_soup.data.tokenize_splits).

    The merge calls this too, so an ingredient is scored on exactly the inputs it was trained on.
    """
    from hf_soup.data import tokenize_splits

    return tokenize_splits(
        splits, tokenizer, max_length, **input_encoder(family, splits.task, tokenizer, max_length), cache_dir=cache_dir
    )


def input_encoder(family: str, task: Task, tokenizer: Any, max_length: int) -> dict[str, Any]:
    """`encoder_name` and `encoder` for `tokenize_splits`: the input format of `family`'s table row.

    Empty for plain text (one text or a pair: tokenize_splits' default encoder)."""
    fmt = family_row(family).input_format
    if fmt == TEXT:
        return {}
    if fmt == T5_PROMPT:
        return {"encoder_name": T5_PROMPT, "encoder": t5_prompt_encoder(task, tokenizer, max_length)}
    raise ValueError(f"{family}: unknown input format {fmt!r}")


def scoring_hooks(config: Any, task: Task, tokenizer: Any, max_length: int) -> dict[str, Any]:
    """How a scorer reads a saved model of any family: model class, logits function, input encoder.

    The keyword arguments of `hf_soup.merge.scorer.prepare_scorer` / `hf_soup.scoring.build_scorer`, so the
    merge scores T5 text-to-text ingredients on the prompts they were trained on.
    """
    family = family_of(config)
    return {
        "model_class": model_class_for(family),
        "logits_fn": class_logits,
        **input_encoder(family, task, tokenizer, max_length),
    }


def check_t5_inputs(family: str, config: Any, features: Any) -> None:
    """T5ForSequenceClassification reads the hidden state at <eos>: every input must end with one."""
    if not family_row(family).eos_pooled:
        return
    eos = config.eos_token_id
    sample = features["train"].select(range(min(8, len(features["train"]))))
    if any(list(ids).count(eos) != 1 for ids in sample["input_ids"]):
        raise SoupError(
            f"t5-classification: the tokenizer does not end each input with exactly one eos_token_id {eos} "
            "(config.json); use the model's own tokenizer"
        )


# ----------------------------------------------------------------------------- loading


def model_class_for(family: str):
    """The transformers Auto class a folder of `family` loads with (the publisher's round trip too)."""
    import transformers

    return getattr(transformers, family_row(family).loader)


def load_for_task(
    source: str | os.PathLike,
    family: str,
    task: Task,
    *,
    head_init_seed: int,
    config_overrides: dict[str, Any] | None = None,
    label_words: list[str] | tuple[str, ...] | None = None,
    token_ids: list[int] | None = None,
    dtype: torch.dtype = torch.float32,
    allow_pickle: bool = False,
) -> tuple[Any, list[str]]:
    """Load `source` for `task`: (model, names of newly initialised parameters, i.e. the head).

    The new head is drawn from `head_init_seed` inside a forked RNG: identical for every grid
    point, and the caller's RNG (the run seed) is left exactly as it was.
    """
    kwargs: dict[str, Any] = dict(config_overrides or {})
    emits_words = family_row(family).label_words  # no new head: the LM head emits a label word
    if not emits_words:
        kwargs.update(num_labels=task.num_labels, id2label=task.id2label, label2id=task.label2id)
        kwargs["ignore_mismatched_sizes"] = True  # an untrained stored head of another size is re-drawn
    # No LOAD REPORT nor bar: the new head is reported once per sweep by the caller, not per run.
    with quiet_transformers(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(head_init_seed)
        model, info = model_class_for(family).from_pretrained(
            source, dtype=dtype, output_loading_info=True, use_safetensors=None if allow_pickle else True, **kwargs
        )
    if emits_words:
        model.config.id2label, model.config.label2id = task.id2label, task.label2id
        setattr(model.config, LABEL_WORDS_KEY, list(label_words or default_label_words(task)))
        setattr(model.config, LABEL_TOKEN_IDS_KEY, list(token_ids or []))
    new = sorted({*info.get("missing_keys", ()), *(m[0] for m in info.get("mismatched_keys", ()))})
    return model, new


def head_parameter_names(model: Any) -> list[str]:
    """Parameters outside the pretrained body (`base_model_prefix`): the task head LP-FT fits."""
    prefix = model.base_model_prefix + "."
    return [name for name, _ in model.named_parameters() if not name.startswith(prefix)]


def _layer_list(base: torch.nn.Module) -> torch.nn.ModuleList | None:
    for path in ("encoder.layer", "encoder.layers", "encoder.block", "transformer.layer", "layers", "layer"):
        module: Any = base
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, torch.nn.ModuleList):
            return module
    return None


def freeze_layers(model: Any, count: int) -> int:
    """Freeze the embeddings and the first `count` (encoder) layers; return how many tensors froze.

    The usual transfer-learning knob: lower layers hold general features, and freezing them also
    keeps ingredients closer together, which helps them average. T5: the shared embedding (tied to
    the LM head in text2text) and the first `count` encoder blocks.
    """
    if count <= 0:
        return 0
    base = model.base_model
    layers = _layer_list(base)
    if layers is None:
        raise SoupError(f"freeze_layers: cannot find the layer list of {type(model).__name__}")
    if count > len(layers):
        raise SoupError(f"freeze_layers: {count} > the {len(layers)} layers of {type(model).__name__}")
    embeddings = getattr(base, "embeddings", None) or model.get_input_embeddings()
    frozen = 0
    for module in (embeddings, *layers[:count]):
        for parameter in module.parameters():
            parameter.requires_grad_(False)
            frozen += 1
    return frozen


def load_ingredient_model(folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Any:
    """Load a fine-tuned folder (an ingredient or a soup) of any family, in eval mode, from safetensors."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as err:
        raise SoupError(f"{folder}: cannot read config.json ({type(err).__name__}: {err})") from err
    family = family_of(config)
    if family_row(family).label_words and not getattr(config, LABEL_TOKEN_IDS_KEY, None):
        raise SoupError(f"{folder}/config.json: {family} model without {LABEL_TOKEN_IDS_KEY}")
    with quiet_transformers():
        model = model_class_for(family).from_pretrained(folder, dtype=dtype, use_safetensors=True)
    return model.eval()


def _forward_arguments(model: Any) -> frozenset[str]:
    return frozenset(inspect.signature(model.forward).parameters)


def class_logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Float logits [batch, num_labels] for any family; keys the model does not take are ignored.

    `batch` holds tensors on the model's device (input_ids, attention_mask, maybe token_type_ids,
    labels, ...). Regression (STS-B) gives [batch, 1]. text2text: the first decoder step's logits
    of each label word's first token (what it was trained to emit there).
    """
    accepted = _forward_arguments(model)
    inputs = {
        k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids") and k in accepted
    }
    if not family_row(family_of(model.config)).label_words:
        return model(**inputs).logits.float()
    ids = inputs["input_ids"]
    start = torch.full((ids.shape[0], 1), model.config.decoder_start_token_id, dtype=ids.dtype, device=ids.device)
    logits = model(**inputs, decoder_input_ids=start, use_cache=False).logits[:, 0, :]
    label_ids = torch.as_tensor(getattr(model.config, LABEL_TOKEN_IDS_KEY), device=logits.device)
    return logits.index_select(-1, label_ids).float()


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Show how hf_soup would load a model for a GLUE task.")
    parser.add_argument("model", help="local folder or Hub id")
    parser.add_argument("--task", default="rte")
    parser.add_argument("--model_family", "--model-family", default="auto")
    args = parser.parse_args(argv)
    task = get_task(args.task)
    base = resolve_base_model(ModelArguments(model_name_or_path=args.model))
    family = resolve_family(args.model_family, base.config)
    check_task_labels(base.config, task)
    model, new = load_for_task(base.local_dir, family, task, head_init_seed=42)
    layers = _layer_list(model.base_model)
    print(f"{base.name_or_path}: {base.config.model_type}, family {family}, {type(model).__name__}")
    print(f"  weights sha256 {base.weights_sha256}, revision {base.revision}")
    print(f"  {sum(p.numel() for p in model.parameters()):,} parameters, {len(layers) if layers else '?'} layers")
    print(f"  new (head) tensors: {', '.join(new) or 'none'}")
    print(f"  config fields a sweep can set: {', '.join(sorted(config_override_keys(base.config)))}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))

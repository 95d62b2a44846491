"""Tiny ingredient folders for the merge tests: one random base + head, perturbed per ingredient.

Every ingredient starts from the same seeded weights (the soup precondition: same pretrained
weights and same head init) and adds its own small noise, so soups differ from their ingredients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hf_soup.ingredient import build_ingredient, write_ingredient
from hf_soup.tasks import get_task

RTE = get_task("rte")


def tiny_classifier(vocab_size: int, *, noise_seed: int | None = None, num_labels: int = 2, id2label=None, **config):
    from transformers import BertConfig, BertForSequenceClassification

    id2label = id2label or (RTE.id2label if num_labels == 2 else {i: f"L{i}" for i in range(num_labels)})
    torch.manual_seed(0)  # the shared "pretrained" weights and head initialisation
    settings = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    settings.update(config)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=vocab_size,
            max_position_embeddings=128,
            num_labels=num_labels,
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            **settings,
        )
    )
    if noise_seed is not None:
        generator = torch.Generator().manual_seed(noise_seed)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model


def ingredient_record(name: str, split: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        run_id=name,
        task="rte",
        primary_metric="accuracy",
        base_model={"name_or_path": "tiny-bert", "revision": None, "weights_sha256": "base"},
        head_init_seed=0,
        seed=0,
        hyperparameters={"learning_rate": 1e-5, "max_seq_length": 64},
        split=split or {"fingerprint": "f"},
        metrics={"heldout": {"accuracy": 0.5, "primary": 0.5}},
    )
    fields.update(overrides)
    return build_ingredient(**fields)


def make_ingredient(
    folder: Path,
    tokenizer_dir: Path,
    *,
    noise_seed: int,
    dtype: torch.dtype = torch.float32,
    record: dict[str, Any] | None = None,
    with_record: bool = True,
    model: Any = None,
    **save_kwargs: Any,
) -> Path:
    """Save a tiny classifier (config + safetensors + tokenizer [+ ingredient.json]) into `folder`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = model or tiny_classifier(len(tokenizer), noise_seed=noise_seed)
    model.to(dtype).save_pretrained(folder, **save_kwargs)
    tokenizer.save_pretrained(folder)
    if with_record:
        write_ingredient(folder, record or ingredient_record(folder.name, seed=noise_seed))
    return folder


def run_merge(argv, capsys) -> tuple[int, str, str]:
    """`python -m hf_soup.merge ARGV` in this process: (exit code, stdout, stderr)."""
    from hf_soup.errors import cli_main
    from hf_soup.merge import main

    code = cli_main(main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def unmoved_classifier(tokenizer_dir):
    """The tiny classifier every `make_ingredient(noise_seed=s)` is a noisy copy of: their common start."""
    from transformers import AutoTokenizer

    return tiny_classifier(len(AutoTokenizer.from_pretrained(tokenizer_dir)))

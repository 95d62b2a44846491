"""Build realistic soup folders for the card and publisher tests (a helper module, not a test file).

A soup folder is what `python -m hf_soup.merge` writes: a normal HF classification model folder
(config + safetensors + tokenizer) plus `soup.json` exactly as docs/FORMATS.md specifies. The
scores below are hand-written but shaped like a real 4-ingredient RTE greedy soup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RTE_LABELS = ("entailment", "not_entailment")


def soup_record(
    *,
    name: str = "rte-greedy",
    recipe: str = "greedy",
    base_model: str = "sentence-transformers/all-MiniLM-L6-v2",
    with_learned: bool = False,
) -> dict[str, Any]:
    """A soup.json for a greedy RTE soup of four ingredients (two kept)."""

    def scores(heldout: float, test: float) -> dict[str, dict[str, float]]:
        return {
            "heldout": {"accuracy": heldout, "primary": heldout, "loss": 0.66},
            "test": {"accuracy": test, "primary": test, "loss": 0.67},
        }

    grid = [
        ("lr2e-05_ep3_seed0-3f9a1c2e", 2e-05, 3, 0, 0.6426, 0.6282, True, 0.5),
        ("lr3e-05_ep3_seed1-7b20d4aa", 3e-05, 3, 1, 0.6305, 0.6173, True, 0.5),
        ("lr5e-05_ep3_seed0-91c0ffee", 5e-05, 3, 0, 0.6145, 0.6065, False, 0.0),
        ("lr1e-05_ep2_seed1-0d15ea5e", 1e-05, 2, 1, 0.5863, 0.5776, False, 0.0),
    ]
    ingredients = [
        {
            "name": run,
            "path": f"runs/rte/{run}",
            "hyperparameters": {"learning_rate": lr, "num_train_epochs": epochs, "warmup_steps": 0.1},
            "seed": seed,
            **scores(heldout, test),
            "kept": kept,
            "weight": weight,
        }
        for run, lr, epochs, seed, heldout, test, kept, weight in grid
    ]
    trace = [
        {
            "step": step,
            "candidate": grid[step - 1][0],
            "heldout": {"accuracy": score, "primary": score},
            "accepted": accepted,
            "soup_size": size,
        }
        for step, score, accepted, size in (
            (1, 0.6426, True, 1),
            (2, 0.6546, True, 2),
            (3, 0.6506, False, 2),
            (4, 0.6386, False, 2),
        )
    ]
    results: dict[str, Any] = {
        "soup": scores(0.6546, 0.6390),
        "best_single": {"name": grid[0][0], **scores(0.6426, 0.6282)},
        "uniform": scores(0.6386, 0.6245),
        "greedy": {**scores(0.6546, 0.6390), "kept": [grid[0][0], grid[1][0]]},
        "ensemble": {**scores(0.6506, 0.6354), "members": 4, "inference_cost": 4},
        "oracle_best_single": {"name": grid[0][0], "test": {"accuracy": 0.6282, "primary": 0.6282}, "oracle": True},
    }
    record: dict[str, Any] = {
        "format": "hf_soup.soup",
        "format_version": 1,
        "name": name,
        "recipe": recipe,
        "task": "rte",
        "primary_metric": "accuracy",
        "criterion": "metric",
        "strict": False,
        "base_model": {"name_or_path": base_model, "revision": None, "weights_sha256": "5b" * 32},
        "split": {"source": "local:/data/glue", "fingerprint": "c0ffee12", "heldout_size": 249, "test_size": 277},
        "ingredients": ingredients,
        "greedy_trace": trace if recipe == "greedy" else [],
        "results": results,
        "commands": {
            "sweep": "accelerate launch scripts/sweep.py --config configs/rte.yaml",
            "merge": f"python -m hf_soup.merge runs/rte --recipe {recipe} --output_dir soups/{name}",
        },
        "versions": {"hf_soup": "0.1.0", "transformers": "5.23.0", "torch": "2.13.0"},
        "created": "2026-11-23T09:10:00Z",
    }
    if with_learned:
        results["learned"] = scores(0.6586, 0.6354)
        record["learned"] = {"granularity": "model", "coefficients": [0.41, 0.33, 0.17, 0.09]}
    return record


def build_soup_folder(dest: Path, base_dir: Path, *, seed: int = 0, **soup_kwargs: Any) -> Path:
    """A classification model built from `base_dir`'s config (random weights) + its tokenizer + soup.json."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(
        base_dir,
        num_labels=2,
        id2label=dict(enumerate(RTE_LABELS)),
        label2id={label: i for i, label in enumerate(RTE_LABELS)},
    )
    dest.mkdir(parents=True, exist_ok=True)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(dest)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(dest)
    (dest / "soup.json").write_text(json.dumps(soup_record(**soup_kwargs), indent=2) + "\n")
    return dest

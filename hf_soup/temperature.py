"""A calibrated soup that stays a plain model: temperature scaling folded into the head's last layer.

    python -m hf_soup.merge --ingredients runs/sst2 --output soups/sst2 --calibrate temperature

Why: a soup averages weights before predicting, and nothing in it says how likely a prediction
is to be wrong; one temperature T fitted on held-out (Guo et al., 2017) repairs most of that. Dividing
the logits by T is the same as dividing the final linear layer's weight and bias by T, so the
written soup gives calibrated probabilities through plain `from_pretrained` and `pipeline`, with no
custom code, and its argmax (so its accuracy) is unchanged (T > 0).

T minimises the held-out negative log-likelihood of the soup's logits (scipy, over log T). The
final layer is the family's classification output (`head_layers` in `hf_soup.families.FAMILY_TABLE`):
BERT-style `classifier`, RoBERTa/ELECTRA-style `classifier.out_proj`, T5ForSequenceClassification's
`classification_head.out_proj`. Regression and T5 text-to-text soups (label words, no linear
output layer) are refused before any work.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from hf_soup.errors import SoupError
from hf_soup.families import family_of, family_row

METHODS = ("temperature",)
KEY = "temperature"  # soup.json's block


def check_request(method: str | None, config: Mapping[str, Any], skip_scoring: bool = False) -> None:
    """Refuse, in one line and before any work, what cannot be calibrated by a temperature."""
    if method is None:
        return
    if method not in METHODS:
        raise SoupError(f"--calibrate {method!r}: must be one of {', '.join(METHODS)}")
    if skip_scoring:
        raise SoupError("--calibrate: the temperature is fitted on held-out scores; it cannot run with --skip_scoring")
    if family_row(family_of(config)).label_words:
        raise SoupError("--calibrate temperature: a text-to-text soup has no classification layer to fold T into")
    if config.get("problem_type") == "regression" or len(config.get("id2label") or {0: 0, 1: 1}) < 2:
        raise SoupError("--calibrate temperature: a regression soup has no class probabilities to calibrate")


def output_layer(model: torch.nn.Module, num_labels: int) -> str:
    """The name of the linear layer that outputs the class logits (where the model's family keeps it)."""
    layers = family_row(family_of(model.config)).head_layers
    modules = dict(model.named_modules())
    for name in layers:
        module = modules.get(name)
        if isinstance(module, torch.nn.Linear) and module.out_features == num_labels:
            return name
    raise SoupError(
        f"--calibrate temperature: {type(model).__name__} has no linear output layer among "
        f"{', '.join(layers) or 'none'}; cannot fold a temperature into it"
    )


def _nll(logits: np.ndarray, references: np.ndarray, temperature: float) -> float:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-log_probs[np.arange(len(references)), np.asarray(references, dtype=np.int64)].mean())


def fit_temperature(logits: np.ndarray, references: np.ndarray) -> float:
    """The T > 0 minimising the mean NLL of softmax(logits / T) (bounded search over log T in [-5, 5])."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(
        lambda log_t: _nll(logits, references, float(np.exp(log_t))),
        bounds=(-5.0, 5.0),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(found.x))


class TemperatureFolded(Mapping[str, torch.Tensor]):
    """A soup's state with the output layer's weight and bias divided by T (read lazily, tensor by tensor)."""

    def __init__(self, state: Mapping[str, torch.Tensor], layer: str, temperature: float):
        self.state, self.temperature = state, temperature
        self.scaled = {f"{layer}.weight", f"{layer}.bias"}
        self.aliases = getattr(state, "aliases", {})

    def __getitem__(self, name: str) -> torch.Tensor:
        tensor = self.state[name]
        if name in self.scaled:
            return (tensor.double() / self.temperature).to(tensor.dtype)
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self.state)

    def __len__(self) -> int:
        return len(self.state)


def calibrate(
    state: Mapping[str, torch.Tensor],
    scores: dict[str, Any],
    model: torch.nn.Module,
    references: dict[str, np.ndarray],
    ensemble: dict[str, Any] | None,
) -> tuple[TemperatureFolded, dict[str, Any]]:
    """(the soup's state with T folded in, soup.json's `temperature` block).

    `scores` is the soup's Scored (split -> ScoreResult), `references` the labels by split, `ensemble`
    the ensemble row's Scored (its calibration is shown beside the soup's: the comparison that matters).
    """
    from hf_soup.calibration import calibration_metrics

    num_labels = scores["heldout"].logits.shape[-1]
    layer = output_layer(model, num_labels)
    temperature = fit_temperature(scores["heldout"].logits, references["heldout"])
    block: dict[str, Any] = {
        "method": "temperature",
        "T": temperature,
        "fitted_on": "heldout",
        "layer": layer,
        "heldout_nll": {
            "before": _nll(scores["heldout"].logits, references["heldout"], 1.0),
            "after": _nll(scores["heldout"].logits, references["heldout"], temperature),
        },
    }
    for split in [s for s in scores if s != "heldout" and s in references]:
        logits = scores[split].logits
        block[split] = {
            "before": calibration_metrics(logits, references[split]),
            "after": calibration_metrics(logits / temperature, references[split]),
        }
        if ensemble and split in ensemble:
            block[split]["ensemble"] = calibration_metrics(ensemble[split].logits, references[split])
    return TemperatureFolded(state, layer, temperature), block


# ----------------------------------------------------------------------------- the table and the card


def _splits(block: dict[str, Any]) -> list[str]:
    return [
        k for k, v in block.items() if isinstance(v, dict) and "before" in v and "after" in v and k != "heldout_nll"
    ]


def table_lines(soup: dict[str, Any]) -> list[str]:
    block = soup.get(KEY)
    if not isinstance(block, dict):
        return []
    lines = [
        f"temperature T = {block['T']:.4f} (fitted on held-out NLL, folded into {block['layer']}; argmax unchanged)"
    ]
    for split in _splits(block):
        found = block[split]
        text = (
            f"  {split.removeprefix('extra:')}: ECE {found['before']['ece']:.4f} -> {found['after']['ece']:.4f}, "
            f"NLL {found['before']['nll']:.4f} -> {found['after']['nll']:.4f}"
        )
        if "ensemble" in found:
            text += f"  (ensemble: ECE {found['ensemble']['ece']:.4f}, NLL {found['ensemble']['nll']:.4f})"
        lines.append(text)
    return lines


def card_text(soup: dict[str, Any]) -> str:
    block = soup.get(KEY)
    if not isinstance(block, dict):
        return ""
    rows = [
        "| split | ECE before | ECE after | NLL before | NLL after | ensemble ECE | ensemble NLL |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in _splits(block):
        found, ensemble = block[split], block[split].get("ensemble") or {}
        cells = [
            split.removeprefix("extra:"),
            *(f"{found[when][key]:.4f}" for key in ("ece",) for when in ("before", "after")),
            *(f"{found[when][key]:.4f}" for key in ("nll",) for when in ("before", "after")),
            *(f"{ensemble[key]:.4f}" if key in ensemble else "—" for key in ("ece", "nll")),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return (
        "### Temperature calibration\n\n"
        f"This model's final layer (`{block['layer']}`) has its weight and bias divided by T = {block['T']:.4f}, "
        "fitted on the held-out split to minimise the negative log-likelihood. Its probabilities (through plain "
        "`from_pretrained` or `pipeline`) are those of the soup at temperature T; its predictions, and so its "
        "accuracy, are unchanged. The other rows of this card are the uncalibrated soups.\n\n" + "\n".join(rows)
    )

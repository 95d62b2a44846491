"""Refuse classification heads that cannot have started from one initialisation.

    from hf_soup.heads import check_heads, check_heads_against
    check_heads(checkpoints)                  # pairwise, from the weights alone (any folders)
    check_heads_against(checkpoints, anchor)  # each ingredient against the start it claims

Why: a soup averages weights coordinate by coordinate, which only means something when every
ingredient grew from the same point. The body is pretrained and shared, but the task head is drawn
at random for each fine-tune; two heads drawn from different seeds are unrelated vectors, and
their average is a worse head than either (cosine about 0 between the two: a soup of them scores
near chance). A recorded `head_init_seed` proves nothing when a script seeded the head elsewhere.

The test, per head weight matrix W (d numbers) of ingredients i and j: fine-tuning moves a head
by Δ, so Wᵢ = W₀ + Δᵢ. Two independent draws A, B give Wᵢ·Wⱼ ≈ A·B + Δᵢ·Δⱼ, whose random part
has a spread of |Wᵢ||Wⱼ|/√d; one shared draw adds |W₀|² (≈ d·σ², σ = the config's
`initializer_range`). With s = Wᵢ·Wⱼ / (d·σ²) and τ = |Wᵢ||Wⱼ| / (√d·d·σ²), a pair is refused only
when s is within 4τ of 0 *and* more than 4τ below 1: consistent with two draws, inconsistent with
one. Runs that moved their heads far from the init scale (large τ) are never refused: the
weights cannot tell, so the merge does not guess. Against a known start (model stock's anchor, A
itself) the same test uses p = Wᵢ·A/|A|² and τ = |Wᵢ|/(|A|·√d), with no assumption about σ.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from hf_soup.errors import SoupError

Z = 4.0  # standard deviations: a shared head is refused with probability ~6e-5 per matrix, at worst
MIN_SIZE = 64  # below this many numbers a head matrix says too little to refuse anything


def head_matrices(checkpoint: Any) -> list[str]:
    """The head's weight matrices: 2-D float tensors outside the body (the most common first name
    component, e.g. `bert.`), e.g. `classifier.weight`, RoBERTa's `classifier.dense.weight`."""
    names = list(checkpoint)
    body = Counter(name.split(".", 1)[0] for name in names).most_common(1)[0][0]
    return [
        name
        for name in names
        if not name.startswith(body + ".")
        and len(checkpoint.shape(name)) == 2
        and math.prod(checkpoint.shape(name)) >= MIN_SIZE
        and checkpoint.dtype(name) in (torch.float32, torch.float16, torch.bfloat16, torch.float64)
    ]


def _vector(state: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    return state[name].detach().reshape(-1).to(torch.float64)


def _refusal(a: Any, b: Any, name: str, statistic: float, what: str) -> SoupError:
    return SoupError(
        f"{b.path}: its classification head cannot share an initialisation with {what}: `{name}` keeps "
        f"{statistic:+.3f} of it (two independent draws give about 0, one shared draw about 1); fine-tune every "
        "ingredient from one head initialisation (the same --head_init_seed, drawn where the model is loaded)"
    )


def check_heads(checkpoints: Sequence[Any]) -> None:
    """Refuse, naming both runs, the first ingredient whose head matrices look independently drawn
    from the first ingredient's (the pairwise test in the module docstring)."""
    if len(checkpoints) < 2:
        return
    first = checkpoints[0]
    std = first.config.get("initializer_range")
    if not isinstance(std, (int, float)) or std <= 0:
        return  # no init scale to compare with (e.g. T5's initializer_factor): nothing to test
    names = head_matrices(first)
    reference = {name: _vector(first, name) for name in names}
    for other in checkpoints[1:]:
        for name in names:
            if name not in other:
                continue  # check_compatible names missing tensors
            a, b = reference[name], _vector(other, name)
            scale = a.numel() * float(std) ** 2
            s = float(a @ b) / scale
            tau = float(a.norm() * b.norm()) / (math.sqrt(a.numel()) * scale)
            if abs(s) < Z * tau and s < 1 - Z * tau:
                raise _refusal(first, other, name, s, f"{first.path}'s")


def check_heads_against(checkpoints: Sequence[Any], anchor: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse the first ingredient whose head does not contain the anchor's (`where` names the
    anchor): model stock would pull the soup towards a point it never started from."""
    for checkpoint in checkpoints:
        for name in head_matrices(checkpoint):
            if name not in anchor:
                continue
            start, weights = _vector(anchor, name), _vector(checkpoint, name)
            squared = float(start @ start)
            if squared == 0:
                continue  # a zero-initialised head: any fine-tune contains it
            p = float(weights @ start) / squared
            tau = float(weights.norm()) / (math.sqrt(squared) * math.sqrt(start.numel()))
            if abs(p) < Z * tau and p < 1 - Z * tau:
                raise _refusal(None, checkpoint, name, p, f"the anchor ({where})")

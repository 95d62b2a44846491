"""The learned soup: softmax mixing coefficients per model or per tensor, fitted on held-out by gradient descent.

    from hf_soup.recipes.learned import learned_soup
    result = learned_soup(ingredients, model, batches, loss_fn, granularity="layer")
    result.coefficients, result.losses, result.state

The forward runs through `torch.func.functional_call`, so any model whose state-dict names match
the ingredients' can be mixed; the merge fits it with the scoring model and its held-out batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hf_soup.recipes.averaging import Progress, StateDict, aliases_of, check_same_names, no_progress
from hf_soup.recipes.context import RecipeContext, RecipeOutcome


class _Mix(torch.autograd.Function):
    """out = Σᵢ wᵢ·θᵢ without keeping any float32 copy of the θᵢ for backward.

    autograd's own `w * θ.float()` would save each cast θ (N models of memory); here backward
    re-reads the (memory-mapped) θᵢ: ∂L/∂wᵢ = <∂L/∂out, θᵢ>, one temporary tensor at a time.
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, accumulate_dtype: torch.dtype, device: torch.device, *tensors):
        ctx.weights_device = weights.device
        ctx.tensors = tensors
        out = torch.zeros(tensors[0].shape, dtype=accumulate_dtype, device=tensors[0].device)
        for weight, tensor in zip(weights.tolist(), tensors):
            out.add_(tensor.to(out.device), alpha=weight)
        return out.to(device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.to(ctx.tensors[0].device, torch.float32)
        grads = torch.stack([(grad * tensor.to(grad.device)).sum() for tensor in ctx.tensors])
        return (grads.to(ctx.weights_device), None, None, *([None] * len(ctx.tensors)))


class _Forward(torch.nn.Module):
    """`forward(module, batch)` as a module, so `functional_call` can run any call convention."""

    def __init__(self, module: torch.nn.Module, forward: Callable[[torch.nn.Module, Any], Any]):
        super().__init__()
        self.module = module
        self.forward_fn = forward

    def forward(self, batch: Any) -> Any:
        return self.forward_fn(self.module, batch)


def _call_with_kwargs(module: torch.nn.Module, batch: Any) -> Any:
    return module(**batch)


@dataclass
class LearnedResult:
    coefficients: torch.Tensor  # (N,) for "model", (N, T) for "layer": softmax over ingredients
    mixed_names: list[str]  # the T tensors the columns of a "layer" coefficient matrix refer to
    granularity: str
    losses: list[float]  # mean held-out loss per epoch
    state: dict[str, torch.Tensor]


def learned_soup(
    sources: Sequence[StateDict],
    module: torch.nn.Module,
    batches: Sequence[Any],
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    forward: Callable[[torch.nn.Module, Any], Any] = _call_with_kwargs,
    granularity: str = "model",
    epochs: int = 5,
    lr: float = 0.05,
    device: torch.device | str = "cpu",
    progress: Progress = no_progress,
) -> LearnedResult:
    """Learned soup: θ = Σᵢ softmax(α)ᵢ·θᵢ, α fitted to minimise `loss_fn(forward(module, batch), batch)`.

    The forward runs through `torch.func.functional_call` with θ in place of `module`'s weights
    (state-dict names must match the ingredients'); `forward` defaults to `module(**batch)`.
    `granularity`: "model" (one α per ingredient) or "layer" (one per ingredient and tensor, as
    in the reference implementation). α starts at 0 (the uniform soup).

    Memory bound: the reference implementation held all N models in RAM. Here the ingredients
    are only referenced (memory-mapped files stay in the page cache, which the kernel can
    evict), and the process holds: the mixed θ (one model, float32) + its gradient during
    backward (≤ one model) + `module`'s own weights + activations + α (N·T floats) — about three
    models plus activations, whatever N. Each step reads every ingredient once (N × model bytes).
    """
    if granularity not in ("model", "layer"):
        raise ValueError(f"granularity must be 'model' or 'layer', got {granularity!r}")
    names = check_same_names(sources)
    aliases = aliases_of(sources[0])
    mixed = [name for name in names if name not in aliases and sources[0][name].is_floating_point()]
    # Hold references (memory maps, not copies) so every step does not reopen files.
    tensors = {name: [source[name] for source in sources] for name in mixed}
    shape = (len(sources),) if granularity == "model" else (len(sources), len(mixed))
    logits = torch.zeros(shape, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    device = torch.device(device)

    def mixed_params(weights: torch.Tensor) -> dict[str, torch.Tensor]:
        params = {}
        for column, name in enumerate(mixed):
            w = weights if granularity == "model" else weights[:, column]
            params[name] = _Mix.apply(w, torch.float32, device, *tensors[name])
        for name, target in aliases.items():
            if target in params:
                params[name] = params[target]
        return params

    module.train(False)
    wrapper = _Forward(module, forward)
    losses = []
    for _ in progress(range(epochs)):
        total, seen = 0.0, 0
        for batch in batches:
            weights = torch.softmax(logits, dim=0)
            params = {f"module.{name}": value for name, value in mixed_params(weights).items()}
            outputs = torch.func.functional_call(wrapper, params, (batch,))
            loss = loss_fn(outputs, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, seen = total + float(loss.detach()), seen + 1
        losses.append(total / max(seen, 1))
    coefficients = torch.softmax(logits.detach(), dim=0)
    state: dict[str, torch.Tensor] = {}
    for column, name in enumerate(mixed):
        w = coefficients if granularity == "model" else coefficients[:, column]
        first = tensors[name][0]
        accumulator = torch.zeros(first.shape, dtype=torch.float32, device=first.device)
        for weight, tensor in zip(w.tolist(), tensors[name]):
            accumulator.add_(tensor.to(first.device), alpha=weight)
        state[name] = accumulator.to(tensors[name][0].dtype)
    for name in names:
        if name not in state and name not in aliases:
            state[name] = sources[0][name].clone()
    for name, target in aliases.items():
        state[name] = state[target]
    return LearnedResult(coefficients, mixed, granularity, losses, {name: state[name] for name in names})


def run(context: RecipeContext) -> RecipeOutcome:
    """Fit the learned soup on held-out with the scorer's model and batches (cross-entropy / MSE)."""
    import torch.nn.functional as F

    args, scorer, task = context.args, context.scorer, context.task
    scorer.load_state(context.checkpoints[0])  # integer buffers and anything not mixed come from here
    batches = list(zip(scorer.batches("heldout"), scorer.batch_labels("heldout")))

    def loss_fn(logits: torch.Tensor, batch) -> torch.Tensor:
        labels = batch[1]
        if task.is_regression:
            return F.mse_loss(logits.float().reshape(-1), labels.float())
        return F.cross_entropy(logits.float(), labels.long())

    learned = learned_soup(
        context.checkpoints,
        scorer.model,
        batches,
        loss_fn,
        forward=lambda model, batch: scorer.logits_fn(model, batch[0]),
        granularity=args.learned_granularity,
        epochs=args.learned_epochs,
        lr=args.learned_lr,
        device=scorer.device,
        progress=context.progress("learned soup epochs"),
    )
    coefficients = learned.coefficients
    weights = (coefficients if coefficients.ndim == 1 else coefficients.mean(dim=1)).tolist()
    extra = {
        "learned": {
            "granularity": learned.granularity,
            "coefficients": coefficients.tolist(),
            "tensors": learned.mixed_names if learned.granularity == "layer" else None,
            "epochs": args.learned_epochs,
            "lr": args.learned_lr,
            "losses": learned.losses,
        }
    }
    # Its held-out score is measured on the split its coefficients were fitted on: not selection-free.
    row = {"fitted_on_heldout": True}
    return RecipeOutcome(learned.state, weights, context.score(learned.state), row=row, extra=extra)


RUNS = {"learned": run}

"""The soup recipes, on tensors only: no files, no CLI, no model loading.

    from hf_soup.soup import RECIPES, uniform_soup, greedy_soup, learned_soup, average_checkpoints
    state = uniform_soup([ckpt_a, ckpt_b, ckpt_c])          # any Mapping[str, Tensor], lazy ones too
    result = greedy_soup(ingredients, heldout_scores, evaluate=my_heldout_scorer)
    result.kept, result.trace, result.state

Every recipe takes its ingredients as `Mapping[str, Tensor]`s (plain state dicts, or the lazy
`hf_soup.checkpoints.Checkpoint`) and reads them one tensor at a time, so what it holds is one
accumulator the size of one model plus one tensor, whatever the number of ingredients.

Conventions shared by all recipes (../shared/DESIGN.md):
  * accumulate in float32 (float64 for checkpoint averaging), write back in the ingredients'
    dtype; averages are formed as θ₀ + Σ wᵢ(θᵢ − θ₀), exact for identical ingredients;
  * tensors that share storage in the first ingredient (tied weights of an in-memory state dict)
    are averaged once and the result is shared again, so they stay tied;
  * tensors that are not floating point (step counters, integer buffers) are copied from the
    first ingredient, never averaged.

Recipes (Wortsman et al. 2022, "Model soups"):
  uniform       mean of all ingredients.
  greedy        Recipe 1: sort by held-out score; add an ingredient when the soup's held-out score
                does not decrease (`strict`: must increase). A running sum makes each step one pass
                over one ingredient plus one evaluation.
  learned       mixing coefficients per model or per tensor ("layer"), softmax-parameterised,
                fitted by gradient descent on held-out through `torch.func.functional_call`.
  average-last  checkpoint averaging (the last N checkpoints of one run), in float64.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

StateDict = Mapping[str, torch.Tensor]
Progress = Callable[[Iterable], Iterable]


@dataclass(frozen=True)
class Recipe:
    name: str
    function: Callable[..., Any]
    summary: str


RECIPES: dict[str, Recipe] = {}


def register(name: str, summary: str) -> Callable:
    """Add a recipe to the registry (the CLI's `--recipe` choices come from it)."""

    def decorate(function: Callable) -> Callable:
        RECIPES[name] = Recipe(name, function, summary)
        return function

    return decorate


def _no_progress(items: Iterable) -> Iterable:
    return items


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run elementwise passes over weights on one intra-op thread, then restore the setting.

    They are memory-bound, so more threads gain little, and on a busy machine (a merge often runs
    beside a sweep) every multi-threaded op can wait a whole scheduler slice for a descheduled
    OpenMP thread: averaging 16 MiniLMs took 10 s with 2 threads on 2 busy cores, 0.6 s with 1.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _aliases(state: StateDict) -> dict[str, str]:
    """{name: earlier name it shares storage with} for the tied tensors of an in-memory state dict."""
    first_of: dict[tuple, str] = {}
    aliases = {}
    for name in state:
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor) or tensor.numel() == 0 or tensor.device.type == "meta":
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride())
        if key in first_of:
            aliases[name] = first_of[key]
        else:
            first_of[key] = name
    return aliases


def _check_same_names(sources: Sequence[StateDict]) -> list[str]:
    if not sources:
        raise ValueError("a soup needs at least one ingredient")
    names = list(sources[0])
    for position, source in enumerate(sources[1:], start=2):
        if len(source) != len(names) or any(name not in source for name in names):
            missing = next((name for name in names if name not in source), None)
            raise ValueError(f"ingredient {position} has different tensor names (first: {missing!r})")
    return names


# ----------------------------------------------------------------------------- weighted averages


def weighted_average(
    sources: Sequence[StateDict],
    weights: Sequence[float] | None = None,
    *,
    accumulate_dtype: torch.dtype = torch.float32,
    progress: Progress = _no_progress,
    chunk_size: int = 1 << 18,
) -> dict[str, torch.Tensor]:
    """Σ wᵢ·θᵢ (weights normalised to sum to 1; None = uniform), one tensor at a time.

    Computed as θ₀ + Σᵢ wᵢ·(θᵢ − θ₀): ingredients of one soup are close to each other, so the
    differences are small and their sum loses less to rounding than a sum of the weights
    themselves, and a soup of identical models is exactly the model (any N, any dtype).
    Tensor-major order: for each name, read it from every ingredient and reduce, so the only
    state beyond the output is two accumulator chunks of `chunk_size` elements (cache-sized;
    the files' pages are memory-mapped, not copied).
    """
    names = _check_same_names(sources)
    uniform = weights is None
    if weights is None:
        weights = [1.0] * len(sources)
    if len(weights) != len(sources):
        raise ValueError(f"{len(weights)} weights for {len(sources)} ingredients")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("weights must sum to a positive number")
    weights = [float(w) / total for w in weights]
    aliases = _aliases(sources[0])
    out: dict[str, torch.Tensor] = {}
    with single_threaded():
        for name in progress(names):
            if name not in aliases:
                out[name] = _weighted_tensor(
                    [source[name] for source in sources], weights, uniform, accumulate_dtype, chunk_size
                )
    for name, target in aliases.items():
        out[name] = out[target]
    return {name: out[name] for name in names}


def _weighted_tensor(
    tensors: list[torch.Tensor], weights: list[float], uniform: bool, accumulate_dtype: torch.dtype, chunk_size: int
) -> torch.Tensor:
    """One tensor of `weighted_average`: θ₀ + Σᵢ wᵢ·(θᵢ − θ₀) chunk by chunk, in `accumulate_dtype`."""
    first = tensors[0]
    if not first.is_floating_point():
        return first.clone()
    device = first.device  # accumulate where the tensors live (a CUDA state dict stays on its GPU)
    flat = [tensor.reshape(-1) for tensor in tensors]
    result = torch.empty(first.numel(), dtype=first.dtype, device=device)
    accumulator = torch.empty(min(chunk_size, first.numel()), dtype=accumulate_dtype, device=device)
    difference = torch.empty_like(accumulator)
    for start in range(0, result.numel(), chunk_size):
        chunk = slice(start, start + chunk_size)
        base = flat[0][chunk].to(accumulate_dtype)
        acc, diff = accumulator[: base.numel()], difference[: base.numel()]
        acc.zero_()
        for tensor, weight in zip(flat[1:], weights[1:]):
            if tensor.dtype == accumulate_dtype and tensor.device == device:
                torch.sub(tensor[chunk], base, out=diff)
            else:  # an explicit cast (or copy across devices) is much faster than a mixed subtraction
                diff.copy_(tensor[chunk]).sub_(base)
            if uniform:
                acc.add_(diff)
            else:
                acc.add_(diff, alpha=weight)
        if uniform:  # sum, then divide once: exact for two ingredients, and RunningSum's order
            acc.div_(len(flat))
        result[chunk] = acc.add_(base)
    return result.view(first.shape)


@register("uniform", "mean of all ingredients")
def uniform_soup(sources: Sequence[StateDict], *, progress: Progress = _no_progress) -> dict[str, torch.Tensor]:
    """The uniform soup: every ingredient weighted equally."""
    return weighted_average(sources, progress=progress)


@register("average-last", "float64 average of the last N checkpoints of one run")
def average_checkpoints(sources: Sequence[StateDict], *, progress: Progress = _no_progress) -> dict[str, torch.Tensor]:
    """Checkpoint averaging (timm's avg_checkpoints): uniform, accumulated in float64."""
    return weighted_average(sources, accumulate_dtype=torch.float64, progress=progress)


# ----------------------------------------------------------------------------- greedy soup


class RunningSum:
    """The soup so far as θ₀ + D/k, with D = Σ (θᵢ − θ₀) over the k ingredients added.

    Holds one model's worth of D (accumulation dtype) and only a reference to θ₀ (memory-mapped
    for a Checkpoint). `mean_with(candidate)` is a lazy view of the soup that adding `candidate`
    would give, computed one tensor at a time as it is read, so trying a candidate costs one pass
    over it and no second copy of the model. Same arithmetic as `weighted_average`, so a soup
    that ends up keeping everything is bitwise the uniform soup.
    """

    def __init__(self, first: StateDict, accumulate_dtype: torch.dtype = torch.float32):
        self.base = first
        self.names = list(first)
        self.aliases = _aliases(first)
        self.dtypes = {name: first[name].dtype for name in self.names}
        self.accumulate_dtype = accumulate_dtype
        self.total: dict[str, torch.Tensor] = {}
        for name in self.names:
            if name in self.aliases:
                continue
            tensor = first[name]
            self.total[name] = (
                torch.zeros(tensor.shape, dtype=accumulate_dtype, device=tensor.device)
                if tensor.is_floating_point()
                else tensor.clone()
            )
        self.count = 1

    def _difference(self, source: StateDict, name: str) -> torch.Tensor:
        device = self.total[self.aliases.get(name, name)].device
        return source[name].to(device, self.accumulate_dtype) - self.base[name].to(self.accumulate_dtype)

    def add(self, source: StateDict) -> None:
        with single_threaded():
            for name, total in self.total.items():
                if total.is_floating_point():
                    total.add_(self._difference(source, name))
        self.count += 1

    def _mean_tensor(self, name: str, candidate: StateDict | None) -> torch.Tensor:
        name = self.aliases.get(name, name)
        total = self.total[name]
        if not total.is_floating_point():
            return total
        base = self.base[name].to(self.accumulate_dtype)
        if candidate is None:
            return (total / self.count + base).to(self.dtypes[name])
        return ((total + self._difference(candidate, name)) / (self.count + 1) + base).to(self.dtypes[name])

    def mean_with(self, candidate: StateDict | None = None) -> StateDict:
        """The soup (with `candidate` added when given) as a lazy mapping in the ingredients' dtype."""
        return _LazyMean(self, candidate)

    def mean(self) -> dict[str, torch.Tensor]:
        """Materialise the soup, reusing the accumulator's memory tensor by tensor (consumes it)."""
        out: dict[str, torch.Tensor] = {}
        for name in list(self.total):
            total = self.total.pop(name)
            if total.is_floating_point():
                total = total.div_(self.count).add_(self.base[name].to(self.accumulate_dtype)).to(self.dtypes[name])
            out[name] = total
        for name, target in self.aliases.items():
            out[name] = out[target]
        return {name: out[name] for name in self.names}


class _LazyMean(Mapping[str, torch.Tensor]):
    def __init__(self, running: RunningSum, candidate: StateDict | None):
        self.running, self.candidate = running, candidate

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.running.dtypes:
            raise KeyError(name)
        return self.running._mean_tensor(name, self.candidate)

    def __iter__(self) -> Iterator[str]:
        return iter(self.running.names)

    def __len__(self) -> int:
        return len(self.running.names)


@dataclass
class GreedyStep:
    """One row of the greedy trace: candidate `index` tried at `step` (1-based)."""

    step: int
    index: int
    score: float
    evaluation: Any
    accepted: bool
    soup_size: int


@dataclass
class GreedyResult:
    kept: list[int]  # ingredient indices in the order they were added
    trace: list[GreedyStep]
    state: dict[str, torch.Tensor]
    score: float  # the soup's held-out score (higher is better)
    evaluation: Any  # what `evaluate` returned for the final soup
    order: list[int] = field(default_factory=list)  # candidates, best held-out first


@register("greedy", "Model Soups Recipe 1: add ingredients in held-out order while the held-out score does not drop")
def greedy_soup(
    sources: Sequence[StateDict],
    scores: Sequence[float],
    evaluate: Callable[[StateDict], Any],
    *,
    key: Callable[[Any], float] = float,
    strict: bool = False,
    evaluations: Sequence[Any] | None = None,
    accumulate_dtype: torch.dtype = torch.float32,
    progress: Progress = _no_progress,
) -> GreedyResult:
    """Greedy soup (Wortsman et al. 2022, Recipe 1).

    `scores[i]` is ingredient i's held-out score (higher is better; pass -loss to select on loss).
    Candidates are tried best first (ties keep the given order). The first is the initial soup,
    with score `scores[first]` (no re-evaluation). Each later candidate is kept when
    `key(evaluate(soup with it)) >= current` (`>` with `strict`). `evaluate` receives a lazy
    mapping in the ingredients' dtype; `evaluations[i]` (optional) is recorded for step 1.
    """
    if len(scores) != len(sources):
        raise ValueError(f"{len(scores)} scores for {len(sources)} ingredients")
    _check_same_names(sources)
    order = sorted(range(len(sources)), key=lambda i: -scores[i])
    first = order[0]
    running = RunningSum(sources[first], accumulate_dtype)
    current = float(scores[first])
    current_evaluation = evaluations[first] if evaluations is not None else current
    trace = [GreedyStep(1, first, current, current_evaluation, True, 1)]
    kept = [first]
    for step, index in enumerate(progress(order[1:]), start=2):
        evaluation = evaluate(running.mean_with(sources[index]))
        score = float(key(evaluation))
        accepted = score > current if strict else score >= current
        if accepted:
            running.add(sources[index])
            kept.append(index)
            current, current_evaluation = score, evaluation
        trace.append(GreedyStep(step, index, score, evaluation, accepted, running.count))
    return GreedyResult(kept, trace, running.mean(), current, current_evaluation, order)


# ----------------------------------------------------------------------------- learned soup


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


@register("learned", "softmax mixing coefficients per model or per tensor, fitted on held-out by gradient descent")
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
    progress: Progress = _no_progress,
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
    names = _check_same_names(sources)
    aliases = _aliases(sources[0])
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


# ----------------------------------------------------------------------------- model stock


@dataclass
class ModelStockResult:
    state: dict[str, torch.Tensor]
    ratios: dict[str, float]  # t per mixed tensor (the weight of the ingredients' mean against the anchor)
    cosines: dict[str, float | None]  # the mean pairwise cosine of the deltas (None: not defined, see below)
    copied: list[str]  # tensors no ingredient changed (every delta exactly zero), copied as they are


def model_stock_ratio(cosine: float | None, n: int) -> float:
    """t = N·cos θ / (1 + (N − 1)·cos θ) (Jang et al. 2024, eq. 4), with cos θ clamped to [0, 1].

    N = 1, or no two non-zero deltas to measure an angle between (`cosine` None): t = 1, the mean
    itself (one fine-tune gives no information about where the centre lies). cos θ ≤ 0 (the fine-tunes
    moved in unrelated or opposite directions): t = 0, the anchor, which is where the formula goes as
    cos θ → 0 and stays finite (for cos θ < 0 it would leave [0, 1] and diverge at −1/(N − 1)).
    """
    if n < 1:
        raise ValueError("model stock needs at least one ingredient")
    if n == 1 or cosine is None:
        return 1.0
    c = min(max(float(cosine), 0.0), 1.0)
    return n * c / (1 + (n - 1) * c)


def _mean_pairwise_cosine(gram: torch.Tensor) -> float | None:
    """Mean of cos(δᵢ, δⱼ) over the pairs i < j whose deltas are both non-zero (None: no such pair)."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    live = torch.nonzero(norms > 0).flatten().tolist()
    cosines = [float(gram[i, j] / (norms[i] * norms[j])) for a, i in enumerate(live) for j in live[a + 1 :]]
    return sum(cosines) / len(cosines) if cosines else None


@register(
    "model-stock", "Model Stock: the ingredients' mean pulled towards the sweep's common start by the deltas' angle"
)
def model_stock_soup(
    sources: Sequence[StateDict],
    anchor: StateDict,
    *,
    progress: Progress = _no_progress,
    chunk_size: int = 1 << 18,
) -> ModelStockResult:
    """Model Stock (Jang et al., ECCV 2024), per tensor: w = w₀ + t·mean(wᵢ − w₀), t from the deltas' angle.

    `anchor` (w₀) is the point every ingredient was fine-tuned from: the pretrained body plus the
    shared head initialisation, or the sweep's warm-start / LP-FT point. With δᵢ = wᵢ − w₀ and cos θ the
    mean pairwise cosine of the δᵢ, t = N·cos θ / (1 + (N − 1)·cos θ) (`model_stock_ratio`: N = 1,
    undefined angles and cos θ ≤ 0 are handled there). No held-out data is used: the soup sidesteps
    the held-out winner's curse of greedy selection.

    Tensors whose deltas are all exactly zero (frozen layers, untouched buffers) are copied from the
    first ingredient; non-float tensors too. Streaming: two passes per tensor over memory-mapped
    inputs, `chunk_size` elements at a time (the Gram matrix of the deltas in float64, then the
    output in float32), so the process holds the output, the anchor's pages and N chunk buffers,
    as the uniform soup does. Tied tensors are mixed once and stay tied.
    """
    names = _check_same_names(sources)
    missing = next((name for name in names if name not in anchor), None)
    if missing is not None:
        raise ValueError(f"the anchor has no tensor {missing!r}")
    n = len(sources)
    aliases = _aliases(sources[0])
    out: dict[str, torch.Tensor] = {}
    ratios: dict[str, float] = {}
    cosines: dict[str, float | None] = {}
    copied: list[str] = []
    with single_threaded():
        for name in progress(names):
            if name in aliases:
                continue
            first = sources[0][name]
            if not first.is_floating_point():
                out[name] = first.clone()
                continue
            base = anchor[name]
            if tuple(base.shape) != tuple(first.shape):
                raise ValueError(
                    f"the anchor's {name!r} has shape {list(base.shape)}, the ingredients' {list(first.shape)}"
                )
            flat = [source[name].reshape(-1) for source in sources]
            base_flat = base.reshape(-1)
            gram = torch.zeros(n, n, dtype=torch.float64)
            for start in range(0, first.numel(), chunk_size):
                chunk = slice(start, start + chunk_size)
                origin = base_flat[chunk].to(torch.float64)
                deltas = torch.stack([tensor[chunk].to(torch.float64) - origin for tensor in flat])
                gram += deltas @ deltas.T
            if not bool(gram.diagonal().any()):
                out[name] = first.clone()
                copied.append(name)
                continue
            cosine = _mean_pairwise_cosine(gram)
            ratio = model_stock_ratio(cosine, n)
            cosines[name], ratios[name] = cosine, ratio
            result = torch.empty(first.numel(), dtype=first.dtype)
            for start in range(0, first.numel(), chunk_size):
                chunk = slice(start, start + chunk_size)
                origin = base_flat[chunk].to(torch.float32)
                total = torch.zeros_like(origin)
                for tensor in flat:
                    total.add_(tensor[chunk].to(torch.float32) - origin)
                result[chunk] = total.mul_(ratio / n).add_(origin)
            out[name] = result.view(first.shape)
    for name, target in aliases.items():
        out[name] = out[target]
    return ModelStockResult({name: out[name] for name in names}, ratios, cosines, copied)


def model_stock_summary(result: ModelStockResult) -> dict[str, Any]:
    """soup.json's `model_stock` block: a summary of the per-tensor t, then every tensor's t and cos θ."""
    values = sorted(result.ratios.values())
    summary: dict[str, Any] = {"tensors_mixed": len(values), "tensors_copied": len(result.copied)}
    if values:
        summary.update(
            t_min=values[0],
            t_median=statistics.median(values),
            t_mean=statistics.fmean(values),
            t_max=values[-1],
            tensors_at_anchor=sum(1 for v in values if v == 0.0),
        )
    return {
        "summary": summary,
        "tensors": [
            {"name": name, "t": ratio, "cos": result.cosines.get(name)} for name, ratio in result.ratios.items()
        ],
        "copied": result.copied,
    }


# ----------------------------------------------------------------------------- filtered uniform soup


@dataclass
class FilterDecision:
    kept: list[int]  # ingredient indices, best held-out first
    dropped: dict[int, str]  # index -> why


def filter_ingredients(
    scores: Sequence[float], losses: Sequence[float | None], *, chance: float, margin: float
) -> FilterDecision:
    """Which ingredients a filtered uniform soup keeps (DiWA, Ramé et al. 2022): not the diverged, not the far worse.

    Dropped: a NaN/infinite held-out score or loss (diverged); a held-out score at or below `chance`
    (the best a constant prediction scores on held-out: such a run learned nothing, and collapsed
    runs predicting one class land exactly there); a score more than `margin` below the best
    surviving one. The selection is on the held-out primary score, the unit users read, with a
    margin meant to be about the held-out noise, so only clearly worse runs go. If every
    ingredient is dropped the best by held-out score is kept alone (a soup of one is that model).
    """
    if len(scores) != len(losses):
        raise ValueError(f"{len(scores)} scores for {len(losses)} losses")
    if margin < 0:
        raise ValueError(f"margin must be non-negative, got {margin}")
    dropped: dict[int, str] = {}
    for i, (score, loss) in enumerate(zip(scores, losses)):
        if not math.isfinite(score) or (loss is not None and not math.isfinite(loss)):
            dropped[i] = "diverged (non-finite held-out score or loss)"
        elif score <= chance:
            dropped[i] = f"at or below chance on held-out ({score:.4f} <= {chance:.4f})"
    alive = [i for i in range(len(scores)) if i not in dropped]
    if alive:
        best = max(scores[i] for i in alive)
        for i in alive:
            if best - scores[i] > margin:
                dropped[i] = f"more than {margin:g} below the best on held-out ({scores[i]:.4f} vs {best:.4f})"
    kept = sorted((i for i in range(len(scores)) if i not in dropped), key=lambda i: -scores[i])
    if not kept:
        finite = [i for i in range(len(scores)) if math.isfinite(scores[i])] or [0]
        kept = [max(finite, key=lambda i: scores[i])]
    return FilterDecision(kept, {i: why for i, why in sorted(dropped.items()) if i not in kept})


@register("filtered-uniform", "uniform soup of the ingredients that neither diverged nor fell a margin below the best")
def filtered_uniform_soup(
    sources: Sequence[StateDict],
    scores: Sequence[float],
    losses: Sequence[float | None],
    *,
    chance: float,
    margin: float,
    progress: Progress = _no_progress,
) -> tuple[FilterDecision, dict[str, torch.Tensor]]:
    """`filter_ingredients`, then the uniform soup of the kept ones in input order: the arithmetic of
    `uniform_soup`, so keeping every ingredient gives exactly the uniform soup."""
    if len(scores) != len(sources):
        raise ValueError(f"{len(scores)} scores for {len(sources)} ingredients")
    decision = filter_ingredients(scores, losses, chance=chance, margin=margin)
    return decision, weighted_average([sources[i] for i in sorted(decision.kept)], progress=progress)

"""What every recipe shares: weighted averages as lazy views, the greedy soup's running sum, tied weights.

    from hf_soup.recipes.averaging import AverageView, RunningSum, weighted_average
    soup = weighted_average([ckpt_a, ckpt_b, ckpt_c])         # any Mapping[str, Tensor], lazy ones too
    view = AverageView([ckpt_a, ckpt_b])                      # the same, computed tensor by tensor as read

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
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import torch

StateDict = Mapping[str, torch.Tensor]
Progress = Callable[[Iterable], Iterable]


def no_progress(items: Iterable) -> Iterable:
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


def aliases_of(state: StateDict) -> dict[str, str]:
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


def check_same_names(sources: Sequence[StateDict]) -> list[str]:
    if not sources:
        raise ValueError("a soup needs at least one ingredient")
    names = list(sources[0])
    for position, source in enumerate(sources[1:], start=2):
        if len(source) != len(names) or any(name not in source for name in names):
            missing = next((name for name in names if name not in source), None)
            raise ValueError(f"ingredient {position} has different tensor names (first: {missing!r})")
    return names


# ----------------------------------------------------------------------------- weighted averages


class AverageView(Mapping[str, torch.Tensor]):
    """Σ wᵢ·θᵢ as a lazy mapping: each tensor is computed from the ingredients when it is read, and
    not kept, so scoring a soup (which copies it tensor by tensor into one model) holds no second
    model. `materialise()` gives the plain state dict (what `weighted_average` returns).

    Tied tensors of the first ingredient are listed in `aliases` ({name: the name it shares storage
    with}); reading either gives the same values, and writers store them once.
    """

    def __init__(
        self,
        sources: Sequence[StateDict],
        weights: Sequence[float] | None = None,
        *,
        accumulate_dtype: torch.dtype = torch.float32,
        chunk_size: int = 1 << 18,
    ):
        self.names = check_same_names(sources)
        self.uniform = weights is None
        weights = [1.0] * len(sources) if weights is None else weights
        if len(weights) != len(sources):
            raise ValueError(f"{len(weights)} weights for {len(sources)} ingredients")
        total = float(sum(weights))
        if total <= 0:
            raise ValueError("weights must sum to a positive number")
        self.sources = sources
        self.weights = [float(w) / total for w in weights]
        self.accumulate_dtype, self.chunk_size = accumulate_dtype, chunk_size
        self.aliases = aliases_of(sources[0])
        self._names = frozenset(self.names)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._names:
            raise KeyError(name)
        name = self.aliases.get(name, name)
        with single_threaded():
            tensors = [source[name] for source in self.sources]
            return _weighted_tensor(tensors, self.weights, self.uniform, self.accumulate_dtype, self.chunk_size)

    def read_into(self, name: str, out: torch.Tensor) -> None:
        """`out.copy_(self[name])` without the tensor-sized temporary (a scorer loads soups with it)."""
        name = self.aliases.get(name, name)
        with single_threaded():
            tensors = [source[name] for source in self.sources]
            if tuple(tensors[0].shape) != tuple(out.shape):
                raise ValueError(f"{name!r} has shape {list(tensors[0].shape)}, the target {list(out.shape)}")
            _weighted_tensor(tensors, self.weights, self.uniform, self.accumulate_dtype, self.chunk_size, out=out)

    def __contains__(self, name: object) -> bool:  # Mapping's default would compute the tensor
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def materialise(self, progress: Progress = no_progress) -> dict[str, torch.Tensor]:
        out = {name: self[name] for name in progress(self.names) if name not in self.aliases}
        for name, target in self.aliases.items():
            out[name] = out[target]
        return {name: out[name] for name in self.names}


def weighted_average(
    sources: Sequence[StateDict],
    weights: Sequence[float] | None = None,
    *,
    accumulate_dtype: torch.dtype = torch.float32,
    progress: Progress = no_progress,
    chunk_size: int = 1 << 18,
) -> dict[str, torch.Tensor]:
    """Σ wᵢ·θᵢ (weights normalised to sum to 1; None = uniform), one tensor at a time.

    Computed as θ₀ + Σᵢ wᵢ·(θᵢ − θ₀): ingredients of one soup are close to each other, so the
    differences are small and their sum loses less to rounding than a sum of the weights
    themselves, and a soup of identical models is exactly the model (any N, any dtype).
    Tensor-major order: for each name, read it from every ingredient and reduce, so the only
    state beyond the output is two accumulator chunks of `chunk_size` elements (cache-sized;
    the files' pages are memory-mapped, not copied). `AverageView` is the same without the output.
    """
    view = AverageView(sources, weights, accumulate_dtype=accumulate_dtype, chunk_size=chunk_size)
    return view.materialise(progress)


def _weighted_tensor(
    tensors: list[torch.Tensor],
    weights: list[float],
    uniform: bool,
    accumulate_dtype: torch.dtype,
    chunk_size: int,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """One tensor of `weighted_average`: θ₀ + Σᵢ wᵢ·(θᵢ − θ₀) chunk by chunk, in `accumulate_dtype`.

    With `out` (any dtype or device, e.g. a scoring model's parameter) the result is written there,
    rounded through the ingredients' dtype first, so it holds exactly what copying the returned
    tensor would give, and no tensor-sized temporary exists.
    """
    first = tensors[0]
    if not first.is_floating_point():
        return first.clone() if out is None else out.copy_(first)
    device = first.device  # accumulate where the tensors live (a CUDA state dict stays on its GPU)
    flat = [tensor.reshape(-1) for tensor in tensors]
    result = torch.empty(first.numel(), dtype=first.dtype, device=device) if out is None else out.view(-1)
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
        result[chunk] = acc.add_(base).to(first.dtype)
    return result.view(first.shape) if out is None else out


# ----------------------------------------------------------------------------- the greedy soup's running sum


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
        self.aliases = aliases_of(first)
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

    def add(self, source: StateDict, chunk_size: int = 1 << 18) -> None:
        with single_threaded():
            for name, total in self.total.items():
                if not total.is_floating_point():
                    continue
                flat, other, base = total.view(-1), source[name].reshape(-1), self.base[name].reshape(-1)
                for start in range(0, flat.numel(), chunk_size):  # chunks: no tensor-sized temporary
                    chunk = slice(start, start + chunk_size)
                    flat[chunk].add_(
                        other[chunk].to(flat.device, self.accumulate_dtype) - base[chunk].to(self.accumulate_dtype)
                    )
        self.count += 1

    def _mean_tensor(self, name: str, candidate: StateDict | None) -> torch.Tensor:
        name = self.aliases.get(name, name)
        total = self.total[name]
        if not total.is_floating_point():
            return total
        base = self.base[name].to(self.accumulate_dtype)
        if candidate is None:
            return (total / self.count).add_(base).to(self.dtypes[name])
        # In place on the one temporary (the difference): same operations, in the same order, as
        # `weighted_average`, so the view is bitwise the soup it stands for.
        mean = self._difference(candidate, name).add_(total).div_(self.count + 1).add_(base)
        return mean.to(self.dtypes[name])

    def read_into(self, name: str, candidate: StateDict | None, out: torch.Tensor, chunk_size: int = 1 << 18) -> None:
        """`out.copy_(self._mean_tensor(name, candidate))`, chunk by chunk (the same operations per
        element, so the same values), without the tensor-sized temporary."""
        name = self.aliases.get(name, name)
        total = self.total[name]
        if tuple(total.shape) != tuple(out.shape):
            raise ValueError(f"{name!r} has shape {list(total.shape)}, the target {list(out.shape)}")
        if not total.is_floating_point():
            out.copy_(total)
            return
        flat_total, flat_out, base = total.view(-1), out.view(-1), self.base[name].reshape(-1)
        other = candidate[name].reshape(-1) if candidate is not None else None
        with single_threaded():
            for start in range(0, flat_total.numel(), chunk_size):
                chunk = slice(start, start + chunk_size)
                origin = base[chunk].to(self.accumulate_dtype)
                if other is None:
                    mean = (flat_total[chunk] / self.count).add_(origin)
                else:
                    mean = (other[chunk].to(total.device, self.accumulate_dtype) - origin).add_(flat_total[chunk])
                    mean.div_(self.count + 1).add_(origin)
                flat_out[chunk] = mean.to(self.dtypes[name])

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

    def read_into(self, name: str, out: torch.Tensor) -> None:
        self.running.read_into(name, self.candidate, out)

    def __contains__(self, name: object) -> bool:  # Mapping's default would compute the tensor
        return name in self.running.dtypes

    def __iter__(self) -> Iterator[str]:
        return iter(self.running.names)

    def __len__(self) -> int:
        return len(self.running.names)

"""Ingredients whose weights are byte-identical: one model, counted once.

    from hf_soup.identical import drop_identical
    kept, twins = drop_identical(checkpoints)      # twins: [Twin(dropped, kept, sha256)]

Why: a grid axis that never takes effect (early stopping that never triggers, a warmup longer than
the run) trains the same model twice under two run ids. Counted as two, such twins make the
uniform soup and the ensemble weigh that model double, and let greedy report "2 kept" for a soup
that is one model, and the card call it an average. The merge keeps the first of each set of
twins and records the rest in soup.json (`identical_weights`).

Cost: only ingredients whose weight files have the same total size are hashed (sha256 of the
files in their stored order), each once, read in 4 MiB blocks from the page cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hf_soup.ingredient import files_sha256


@dataclass(frozen=True)
class Twin:
    dropped: Any  # the hf_soup.checkpoints.Checkpoint left out
    kept: Any  # the earlier one with the same bytes
    sha256: str

    def to_json(self) -> dict[str, str]:
        """soup.json `identical_weights` row."""
        return {
            "name": self.dropped.name,
            "path": str(self.dropped.path),
            "identical_to": self.kept.name,
            "sha256": self.sha256,
        }


def weights_digest(checkpoint: Any) -> str:
    """sha256 over an ingredient's weight files (`Checkpoint.files`, in their order)."""
    return files_sha256(checkpoint.files)


def _size(checkpoint: Any) -> int:
    return sum(file.stat().st_size for file in checkpoint.files)


def drop_identical(checkpoints: Sequence[Any]) -> tuple[list[Any], list[Twin]]:
    """(the ingredients with each distinct set of weights once, first given kept; the twins left out)."""
    sizes = [_size(c) for c in checkpoints]
    shared = {size for size in sizes if sizes.count(size) > 1}
    first_of: dict[str, Any] = {}
    kept: list[Any] = []
    twins: list[Twin] = []
    for checkpoint, size in zip(checkpoints, sizes):
        if size not in shared:
            kept.append(checkpoint)
            continue
        digest = weights_digest(checkpoint)
        if digest in first_of:
            twins.append(Twin(checkpoint, first_of[digest], digest))
            continue
        first_of[digest] = checkpoint
        kept.append(checkpoint)
    return kept, twins


def warning(twin: Twin) -> str:
    """The line the merge prints for each twin left out."""
    return (
        f"warning: {twin.dropped.path}: counted once, its weights are byte-identical to {twin.kept.path} "
        f"(sha256 {twin.sha256[:12]}): one model trained twice, e.g. a grid axis that never took effect"
    )


def table_line(soup: dict[str, Any]) -> str | None:
    """The line under the merge's table naming the twins (None when there were none)."""
    twins = soup.get("identical_weights") or []
    if not twins:
        return None
    pairs = ", ".join(f"{t['name']} = {t['identical_to']}" for t in twins)
    return (
        f"identical weights: {len(twins)} ingredient(s) byte-identical to another were counted once ({pairs}); "
        "every row above is over the distinct models"
    )

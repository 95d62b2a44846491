"""The anchor of model stock: the point every ingredient of a sweep was fine-tuned from.

    python -m hf_soup.merge --ingredients runs/rte --recipe model-stock --output soups/rte-stock
    python -m hf_soup.merge --ingredients my/a my/b --task rte --glue_dir ../shared/glue \\
        --recipe model-stock --anchor my/start --output soups/mine          # plain folders: name the start

Model stock pulls the ingredients' mean back towards their common start (w₀), so it must know
that start exactly; a wrong anchor silently gives a wrong model. Found, in this order:
  1. `--anchor DIR`: a model folder with the ingredients' tensor names and shapes (plain folders,
     or a sweep whose start is elsewhere);
  2. the shared start the sweep recorded in every ingredient.json (`start.path`, relative to the
     sweep folder: its warm-start or LP-FT model in `.shared/`), checked against the recorded
     `start.weights_sha256`, and the same for every ingredient;
  3. a sweep without a shared start: the pretrained body with the sweep's head initialisation,
     rebuilt by the call the sweep itself makes (`hf_soup.models.load_for_task` on `base_model` with
     `head_init_seed`; the head is drawn under that seed, so the rebuild is bit-identical to what
     every grid point started from — tested against a sweep trained with learning rate 0), after
     checking the base weights' sha256 against the one recorded.
Anything else (no ingredient.json, ingredients that started from different points, a missing or
changed start folder) is refused in one line: there is no anchor to guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hf_soup.checkpoints import Checkpoint
from hf_soup.errors import SoupError
from hf_soup.heads import check_heads_against
from hf_soup.ingredient import weights_sha256

BASE_WITH_HEAD = "base+head-init"


@dataclass
class Anchor:
    """Where the anchor is (`description`, soup.json `model_stock.anchor`) and, once loaded, its tensors."""

    description: dict[str, Any]  # kind, path, weights sha256 (and head_init_seed for a rebuilt one)
    state: Mapping[str, torch.Tensor] | None = None

    def load(self, checkpoints: Sequence[Checkpoint], task: Any = None) -> Anchor:
        """This anchor with its tensors (`load_anchor`): what model stock's run calls, when it runs."""
        return self if self.state is not None else load_anchor(self, checkpoints, task)


def _field(checkpoint: Checkpoint, key: str) -> Any:
    return (checkpoint.ingredient or {}).get(key)


def locate_anchor(checkpoints: Sequence[Checkpoint], explicit: str | None = None) -> Anchor:
    """Find the anchor and check it (files, hashes) without loading it: what a merge does before any work."""
    if explicit:
        anchor = Checkpoint(explicit)
        _check_fits(anchor, checkpoints[0])
        return Anchor({"kind": "explicit", "path": str(anchor.path), "weights_sha256": weights_sha256(anchor.path)})
    missing = next((c for c in checkpoints if c.ingredient is None), None)
    if missing is not None:
        raise SoupError(
            f"{missing.path}: no ingredient.json, so the point it was fine-tuned from is unknown; "
            "model-stock needs it: pass --anchor DIR (the model every ingredient started from)"
        )
    starts = [_field(c, "start") for c in checkpoints]
    if any(starts):
        return _shared_start(checkpoints, starts)
    return _base_with_head(checkpoints)


def load_anchor(anchor: Anchor, checkpoints: Sequence[Checkpoint], task: Any = None) -> Anchor:
    """`anchor` with its tensors: the folder memory-mapped, or the base + head rebuilt (one model in memory)."""
    if anchor.description["kind"] != BASE_WITH_HEAD:
        start = Checkpoint(anchor.description["path"])
        check_heads_against(checkpoints, start, f"{anchor.description['kind']} {start.path.name}")
        return Anchor(anchor.description, start)
    from hf_soup import models

    record = checkpoints[0].ingredient
    config = checkpoints[0].config
    overridable = models.config_override_keys(models.resolve_base_model(_base_arguments(record)).config)
    overrides = {k: v for k, v in (record.get("hyperparameters") or {}).items() if k in overridable}
    model, _ = models.load_for_task(
        anchor.description["path"],
        record.get("model_family") or models.ENCODER,
        task or task_of_record(record),
        head_init_seed=int(record["head_init_seed"]),
        config_overrides=overrides,
        label_words=config.get(models.LABEL_WORDS_KEY),
        token_ids=config.get(models.LABEL_TOKEN_IDS_KEY),
    )
    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    check_heads_against(checkpoints, state, f"{BASE_WITH_HEAD}, head_init_seed {record['head_init_seed']}")
    return Anchor(anchor.description, state)


def find_anchor(checkpoints: Sequence[Checkpoint], explicit: str | None = None, task: Any = None) -> Anchor:
    """`locate_anchor`, then `load_anchor`; SoupError when no anchor is known."""
    return load_anchor(locate_anchor(checkpoints, explicit), checkpoints, task)


def _shared_start(checkpoints: Sequence[Checkpoint], starts: list[Any]) -> Anchor:
    first = checkpoints[0]
    for checkpoint, start in zip(checkpoints, starts):
        if not start or start.get("weights_sha256") != starts[0].get("weights_sha256"):
            raise SoupError(
                f"{checkpoint.path}/ingredient.json: field 'start' differs from {first.path}'s: the ingredients "
                "were fine-tuned from different points, so model-stock has no common anchor"
            )
    start = starts[0]
    folder = first.path.parent / str(start.get("path") or "")
    if not start.get("path") or not folder.is_dir():
        raise SoupError(
            f"{first.path}/ingredient.json: field 'start.path' names {folder}, which does not exist "
            "(the sweep's .shared/ folder was moved or removed); pass --anchor DIR"
        )
    found = weights_sha256(folder)
    if start.get("weights_sha256") and found != start["weights_sha256"]:
        raise SoupError(
            f"{folder}: weights sha256 {found} is not the {start['weights_sha256']} the ingredients started from"
        )
    _check_fits(Checkpoint(folder), first)
    return Anchor({"kind": start.get("kind") or "shared-start", "path": str(folder), "weights_sha256": found})


def _check_fits(anchor: Checkpoint, ingredient: Checkpoint) -> None:
    """Every tensor of the ingredients, with the same shape, must be in the anchor (read from file headers)."""
    for name in ingredient:
        if name not in anchor:
            raise SoupError(
                f"{anchor.path}: no tensor {name!r}, which {ingredient.path} has: not the ingredients' start"
            )
        if anchor.shape(name) != ingredient.shape(name):
            raise SoupError(
                f"{anchor.path}: tensor {name!r} has shape {list(anchor.shape(name))}, "
                f"{ingredient.path} {list(ingredient.shape(name))}: not the ingredients' start"
            )


def task_of_record(record: dict[str, Any]) -> Any:
    """The task an ingredient.json (or soup.json) record was trained / scored on: its data description
    (`data.task`) when it has one, else the GLUE preset it names."""
    from hf_soup.tasks import Task, get_task

    described = (record.get("data") or {}).get("task")
    if described:
        return Task.from_dict(described)
    return get_task(record["task"])


def _base_arguments(record: dict[str, Any]) -> Any:
    from hf_soup import models

    base = record.get("base_model") or {}
    return models.ModelArguments(model_name_or_path=base.get("name_or_path"), model_revision=base.get("revision"))


def _base_with_head(checkpoints: Sequence[Checkpoint]) -> Anchor:
    from hf_soup import models

    record = checkpoints[0].ingredient
    base = record.get("base_model") or {}
    if not base.get("name_or_path"):
        raise SoupError(f"{checkpoints[0].path}/ingredient.json: field 'base_model.name_or_path' is missing")
    resolved = models.resolve_base_model(_base_arguments(record))
    if base.get("weights_sha256") and resolved.weights_sha256 != base["weights_sha256"]:
        raise SoupError(
            f"{resolved.local_dir}: weights sha256 {resolved.weights_sha256} is not the base the ingredients were "
            f"fine-tuned from ({base['weights_sha256']}); pass --anchor DIR"
        )
    return Anchor(
        {
            "kind": BASE_WITH_HEAD,
            "path": str(resolved.local_dir),
            "weights_sha256": resolved.weights_sha256,
            "head_init_seed": int(record["head_init_seed"]),
        }
    )

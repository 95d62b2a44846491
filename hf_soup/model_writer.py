"""Writing a model folder: weights as `save_pretrained` writes them, config and tokenizer files beside them.

    from hf_soup.model_writer import copy_model_files, save_state
    save_state(soup_state, folder, max_shard_size="5GB")   # model.safetensors, or shards + index
    copy_model_files(ingredient_folder, folder)             # config.json, tokenizer files

The merge writes soups with it and the checkpoint-averaging callback its averages; reading
ingredients is `hf_soup.checkpoints`' job (whose file names this module shares).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from hf_soup.checkpoints import MODEL_FILES, SAFE_INDEX, SAFE_SINGLE, TOKENIZER_FILES
from hf_soup.errors import SoupError


def _shards(state: Mapping[str, torch.Tensor], max_bytes: int) -> list[list[str]]:
    """Tensor names grouped into consecutive shards of at most `max_bytes` (a bigger tensor alone)."""
    shards: list[list[str]] = [[]]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?\s*", size.upper())
    if not match:
        raise SoupError(f"--max_shard_size {size!r}: expected a size such as 5GB or 500MB")
    return int(float(match.group(1)) * 1000 ** " KMGT".index(match.group(2) or " "))


def save_state(
    state: Mapping[str, torch.Tensor], folder: str | os.PathLike, max_shard_size: int | str = "5GB"
) -> list[Path]:
    """Write `state` as `model.safetensors`, or as shards + `model.safetensors.index.json` when large.

    Same file names, index and metadata as `save_pretrained`, so `from_pretrained(folder)` loads
    it. Tensors that share storage (tied weights of an in-memory state dict) are written once. A
    lazy mapping is read (computed) here, tensor by tensor.
    (Sharding is done here rather than with huggingface_hub's splitter, which imports
    torch.distributed — a second of start-up and ~100 MB for a merge that needs neither.)
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    seen: set[tuple] = set()
    unique: dict[str, torch.Tensor] = {}
    aliases = getattr(state, "aliases", {})  # a lazy soup (recipes.averaging.AverageView) names its tied tensors
    for name in state:
        if name in aliases:
            continue
        tensor = state[name]
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        unique[name] = tensor.contiguous()
    shards = _shards(unique, _parse_size(max_shard_size))
    if len(shards) == 1:
        save_file(unique, str(folder / SAFE_SINGLE), metadata={"format": "pt"})
        return [folder / SAFE_SINGLE]
    written, weight_map = [], {}
    for number, names in enumerate(shards, start=1):
        filename = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file({name: unique[name] for name in names}, str(folder / filename), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, filename))
        written.append(folder / filename)
    total = sum(t.numel() * t.element_size() for t in unique.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / SAFE_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return written


def files_sha256(paths: list[Path]) -> dict[str, str]:
    """{file name: sha256 of its bytes} of written weight files, as `sha256sum` prints them (timm's habit:
    a soup can be checked against its record after any copy or download)."""
    digests = {}
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        digests[Path(path).name] = digest.hexdigest()
    return digests


def copy_model_files(source: str | os.PathLike, folder: str | os.PathLike) -> list[Path]:
    """Copy config and tokenizer files (not weights, not pickles, not ingredient.json) into `folder`."""
    source, folder = Path(source), Path(folder)
    copied = []
    for name in (*MODEL_FILES, *TOKENIZER_FILES):
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
            copied.append(folder / name)
    return copied

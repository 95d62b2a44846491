"""Find soup ingredients on disk, read their tensors lazily, and refuse ingredients that do not mix.

    from hf_soup.checkpoints import Checkpoint, check_compatible, find_ingredients
    folders = find_ingredients(["runs/rte", "extra/*-seed*"])   # a sweep dir expands to its runs
    ingredients = [Checkpoint(folder) for folder in folders]
    check_compatible(ingredients)                              # names the FIRST difference
    tensor = ingredients[0]["classifier.weight"]               # memory-mapped, checked finite

Why lazy: a soup of N models must not hold N models. `Checkpoint` is a read-only
`Mapping[str, Tensor]` over `safe_open` handles: a tensor is read (memory-mapped, so the pages
belong to the page cache, not to the process's anonymous memory) only when asked for, which lets
`hf_soup.recipes` stream one tensor of one ingredient at a time.

Why the refusals: averaging weights is only meaningful for models fine-tuned from the same
pretrained weights with the same head initialisation, label order, config and tokenizer. Mixing
anything else silently produces a broken model, so every difference is an error naming both
folders (config.json: every key but paths, versions, dtype and dropouts, see `config_difference`).
Pickled `.bin` weights can execute code when loaded: refused unless the user opts in, and then
loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hf_soup.atomic import TMP_PREFIX
from hf_soup.errors import SoupError
from hf_soup.ingredient import INGREDIENT_FILE, read_ingredient, read_json

CONFIG_FILE = "config.json"
SAFE_SINGLE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_SINGLE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
# Files that make a folder loadable besides the weights: copied into a soup as they are.
MODEL_FILES = ("config.json", "generation_config.json")
# The one list of tokenizer files (the merge copies them into a soup, the publisher pushes them):
# fast tokenizers (tokenizer.json), WordPiece/BPE vocabularies, and the SentencePiece models that
# slow tokenizers and older Hub repos keep (T5 spiece.model, DeBERTa-v2/v3 spm.model, XLM-R
# sentencepiece.bpe.model, Llama-style tokenizer.model).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "spm.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "chat_template.jinja",
)
# Per-call or per-save runtime state in tokenizer files: not part of what the tokenizer does.
_TOKENIZER_VOLATILE_KEYS = {"truncation", "padding", "name_or_path", "tokenizer_file", "model_max_length"}
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


# ----------------------------------------------------------------------------- finding folders


def weight_files(folder: str | os.PathLike) -> tuple[list[Path], bool]:
    """(weight files of a model folder, whether they are pickled `.bin`); ([], False) when none.

    safetensors wins when both formats are present (what `from_pretrained` does too).
    """
    folder = Path(folder)
    for index_name, single, pickled in ((SAFE_INDEX, SAFE_SINGLE, False), (BIN_INDEX, BIN_SINGLE, True)):
        if (folder / index_name).is_file():
            index = _read_json(folder / index_name)
            weight_map = index.get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise SoupError(f"{folder / index_name}: field 'weight_map' is missing or empty")
            return [folder / name for name in sorted(set(weight_map.values()))], pickled
        if (folder / single).is_file():
            return [folder / single], pickled
    return [], False


def is_model_folder(folder: str | os.PathLike) -> bool:
    """A Hugging Face model folder: `config.json` plus weights (safetensors or `.bin`, sharded or not)."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        return False
    try:
        return bool(weight_files(folder)[0])
    except SoupError:
        return True  # a broken index is reported when the folder is opened, with its name


def find_ingredients(patterns: Sequence[str], resolved: Mapping[str, Path] | None = None) -> list[Path]:
    """Expand ingredient arguments into model folders, in argument order.

    Each argument is a model folder, a folder of model folders (a sweep's output: expanded to its
    children, `.tmp-*` leftovers of killed runs skipped), or a glob of either; `resolved` maps
    arguments that name something else (a Hub id) to their local folder (its snapshot). The same
    folder reached twice (`A A`, a symlink to A, a sweep folder and one of its runs, `org/m` and
    `org/m@main`) is refused: silently dropping one would hide a mistake in the command, keeping
    both would weight it double.
    """
    resolved = resolved or {}
    found: list[tuple[Path, str]] = []  # (folder, the argument it came from)
    for pattern in patterns:
        if pattern in resolved:
            found.append((Path(resolved[pattern]), pattern))
            continue
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not paths:
            raise SoupError(f"{pattern}: no file or folder matches")
        for path in map(Path, paths):
            if path.name.startswith(TMP_PREFIX):
                continue
            if not path.exists():
                raise SoupError(f"{path}: no such folder")
            if is_model_folder(path):
                found.append((path, pattern))
                continue
            if not path.is_dir():
                raise SoupError(f"{path}: not a model folder (expected config.json and model.safetensors)")
            children = [
                child
                for child in sorted(path.iterdir())
                if child.is_dir() and not child.name.startswith(TMP_PREFIX) and is_model_folder(child)
            ]
            if not children:
                raise SoupError(f"{path}: no model folders inside (expected config.json and model.safetensors)")
            found.extend((child, pattern) for child in children)

    def named(path: Path, given: str) -> str:
        return given if given in resolved or given == str(path) else f"{path} (from {given!r})"

    first_of: dict[tuple[int, int], int] = {}
    for index, (path, given) in enumerate(found):
        stat = path.stat()  # (device, inode): equal through symlinks, bind mounts and `a/../a`
        first = first_of.setdefault((stat.st_dev, stat.st_ino), index)
        if first != index:
            raise SoupError(
                f"--ingredients: {named(*found[first])} and {named(path, given)} are the same folder; it would "
                "count twice in the soup, give each ingredient once"
            )
    return [path for path, _ in found]


def find_trainer_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The `checkpoint-<step>` folders a Trainer run saved, oldest first (by step, not by name)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SoupError(f"{run_dir}: no such folder")
    steps = []
    for child in run_dir.iterdir():
        match = _CHECKPOINT_DIR.match(child.name)
        if match and is_model_folder(child):
            steps.append((int(match.group(1)), child))
    return [path for _, path in sorted(steps)]


# ----------------------------------------------------------------------------- one ingredient


def _read_json(path: Path) -> dict[str, Any]:
    value = read_json(path)
    if not isinstance(value, dict):
        raise SoupError(f"{path}: expected a JSON object")
    return value


class Checkpoint(Mapping[str, torch.Tensor]):
    """One model folder as a lazy, read-only `Mapping[str, Tensor]` of its stored weights.

    Keys are the names stored in the files (tied weights appear once, as `save_pretrained`
    writes them). Every floating tensor is checked for NaN/Inf the first time it is read.
    """

    def __init__(self, folder: str | os.PathLike, *, allow_pickle: bool = False, hub: Any = None):
        self.path = Path(folder)
        self.hub = hub  # a hf_soup.hub_ingredients.HubIngredient when the folder is a Hub snapshot
        if not self.path.is_dir():
            raise SoupError(f"{self.path}: no such folder")
        self.config = _read_json(self.path / CONFIG_FILE)
        self.ingredient: dict[str, Any] | None = (
            read_ingredient(self.path) if (self.path / INGREDIENT_FILE).is_file() else None
        )
        files, self.pickled = weight_files(self.path)
        if not files:
            raise SoupError(f"{self.path}: no weights (expected {SAFE_SINGLE} or {SAFE_INDEX})")
        if self.pickled and not allow_pickle:
            raise SoupError(
                f"{files[0]}: pickled weights can run code when loaded; refusing (convert to safetensors, "
                "or pass --allow_pickle to load them with torch.load(weights_only=True))"
            )
        self.files = files
        self._file_of: dict[str, Path] = {}
        self._handles: dict[Path, Any] = {}
        self._checked: set[str] = set()
        for file in files:
            if not file.is_file():
                raise SoupError(f"{file}: listed in the index but missing")
            for name in self._open(file).keys():  # noqa: SIM118 - safe_open handles are not iterable
                self._file_of[name] = file

    @property
    def name(self) -> str:
        """The run id from ingredient.json, else the Hub id (`org/model[@revision]`), else the folder name."""
        if self.ingredient:
            return str(self.ingredient["run_id"])
        return self.hub.name if self.hub is not None else self.path.name

    def _open(self, file: Path) -> Any:
        if file not in self._handles:
            if self.pickled:
                self._handles[file] = _load_pickled(file)
            else:
                from safetensors import safe_open

                try:
                    self._handles[file] = safe_open(str(file), framework="pt", device="cpu")
                except Exception as err:  # truncated or not a safetensors file
                    raise SoupError(f"{file}: cannot read safetensors ({err})") from None
        return self._handles[file]

    def __getitem__(self, name: str) -> torch.Tensor:
        file = self._file_of.get(name)
        if file is None:
            raise KeyError(name)
        handle = self._open(file)
        tensor = handle[name] if self.pickled else handle.get_tensor(name)
        if name not in self._checked:
            if not _is_finite(tensor):
                raise SoupError(f"{file}: tensor {name!r} contains NaN or Inf values; refusing to mix it")
            self._checked.add(name)
        return tensor

    def __contains__(self, name: object) -> bool:  # Mapping's default would read the tensor
        return name in self._file_of

    def __iter__(self) -> Iterator[str]:
        return iter(self._file_of)

    def __len__(self) -> int:
        return len(self._file_of)

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape from the file header, without reading the tensor."""
        file = self._file_of[name]
        if self.pickled:
            return tuple(self._open(file)[name].shape)
        return tuple(self._open(file).get_slice(name).get_shape())

    def dtype(self, name: str) -> torch.dtype | str:
        """dtype from the file header, without reading the tensor."""
        file = self._file_of[name]
        if self.pickled:
            return self._open(file)[name].dtype
        code = self._open(file).get_slice(name).get_dtype()
        return _SAFETENSORS_DTYPES.get(code, code)

    def weights_dtype(self) -> torch.dtype | str:
        """The dtype of the floating tensors (what a soup of this ingredient is written in)."""
        for name in self:
            dtype = self.dtype(name)
            if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
                return dtype
        return torch.float32

    def tokenizer_files(self) -> list[Path]:
        return [self.path / name for name in TOKENIZER_FILES if (self.path / name).is_file()]

    def tokenizer_digest(self) -> str | None:
        """sha256 of what the tokenizer does (runtime truncation/padding state left out); None if absent."""
        files = self.tokenizer_files()
        if not files:
            return None
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.name.encode() + b"\0")
            if file.suffix == ".json":
                content = _read_json(file)
                for key in _TOKENIZER_VOLATILE_KEYS:
                    content.pop(key, None)
                digest.update(json.dumps(content, sort_keys=True).encode())
            else:
                digest.update(file.read_bytes())
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, {len(self)} tensors)"


def _is_finite(tensor: torch.Tensor) -> bool:
    """True unless a floating tensor holds NaN/Inf.

    A float32 sum is non-finite whenever an element is (NaN or ±Inf propagate), and is ~40×
    cheaper than `isfinite(t).all()`; only a suspicious sum (or an overflow, impossible for
    weights below 1e34) pays for the exact check.
    """
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return True
    if bool(torch.isfinite(tensor.sum(dtype=torch.float32))):
        return True
    return bool(torch.isfinite(tensor).all())


def _load_pickled(file: Path) -> dict[str, torch.Tensor]:
    """`torch.load(weights_only=True)`: tensors and plain containers only, never arbitrary objects."""
    try:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SoupError(f"{file}: refused by torch.load(weights_only=True) ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SoupError(f"{file}: expected a state dict of tensors")
    return state


# ----------------------------------------------------------------------------- compatibility


def _label_map(config: dict[str, Any]) -> dict[str, str] | None:
    id2label = config.get("id2label")
    return {str(k): str(v) for k, v in id2label.items()} if isinstance(id2label, dict) else None


def _ingredient_field(checkpoint: Checkpoint, *keys: str) -> Any:
    value: Any = checkpoint.ingredient
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _base_model_identity(checkpoint: Checkpoint) -> Any:
    base = _ingredient_field(checkpoint, "base_model")
    if not isinstance(base, dict):
        return None
    if base.get("weights_sha256"):
        return {"weights_sha256": base["weights_sha256"]}
    return {"name_or_path": base.get("name_or_path"), "revision": base.get("revision")}


# config.json keys that may differ between ingredients of one soup: where the folder came from,
# which library version wrote it, and the storage dtype (the tensors' dtypes are compared one by
# one instead). Dropout probabilities (`is_dropout_key`) may differ too: dropout is off at
# inference, so they change how an ingredient was trained, not what the soup computes. Every other
# key (layer_norm_eps, initializer or attention settings, label words...) must be equal: the soup is
# scored with, and written with, one config.
HARMLESS_CONFIG_KEYS = frozenset({"_name_or_path", "transformers_version", "dtype", "torch_dtype"})
_ABSENT = object()


def is_dropout_key(key: str) -> bool:
    """hidden_dropout_prob, attention_probs_dropout_prob, classifier_dropout, dropout_rate (T5), ..."""
    return "dropout" in key.lower()


def _config_defaults(model_type: Any) -> dict[str, Any]:
    """The model type's default config: a key one transformers version writes and another omits
    is compared against it, not reported as a difference."""
    try:
        from transformers import CONFIG_MAPPING

        return CONFIG_MAPPING[model_type]().to_dict()
    except Exception:  # an unknown or missing model_type: no defaults, absent keys compare as absent
        return {}


def _problem_type(config: dict[str, Any]) -> Any:
    """config.json's `problem_type`, unset resolved as transformers resolves it at the first forward
    with integer labels. The model sets it there, and only there: a run whose Trainer computes the
    loss itself (`label_smoothing_factor > 0`) never calls it with labels, so its config keeps None
    while its grid neighbours save "single_label_classification" for the same head."""
    if config.get("problem_type"):
        return config["problem_type"]
    return "regression" if len(config.get("id2label") or {0: 0, 1: 1}) == 1 else "single_label_classification"


def config_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The first config.json key (sorted) whose values differ, harmless keys and dropouts left out."""
    defaults = _config_defaults(a.get("model_type"))
    for key in sorted(set(a) | set(b)):
        if key in HARMLESS_CONFIG_KEYS or is_dropout_key(key):
            continue
        if key == "problem_type" and _problem_type(a) == _problem_type(b):
            continue
        left, right = a.get(key, defaults.get(key, _ABSENT)), b.get(key, defaults.get(key, _ABSENT))
        if left != right:
            shown = ["(absent)" if value is _ABSENT else repr(value) for value in (left, right)]
            return f"config.json {key!r}: {shown[0]} vs {shown[1]}"
    return None


def mixed_dropout(checkpoints: Sequence[Checkpoint]) -> dict[str, list[Any]]:
    """{dropout key: its distinct values, in ingredient order} for the dropouts that differ (soup.json
    records them: the soup's config.json keeps one value, the ingredients were trained with all)."""
    keys = sorted({key for c in checkpoints for key in c.config if is_dropout_key(key)})
    defaults = _config_defaults(checkpoints[0].config.get("model_type")) if checkpoints else {}
    mixed = {}
    for key in keys:
        values: list[Any] = []
        for checkpoint in checkpoints:
            value = checkpoint.config.get(key, defaults.get(key))
            if value not in values:
                values.append(value)
        if len(values) > 1:
            mixed[key] = values
    return mixed


def _run_identity(checkpoint: Checkpoint) -> str | None:
    """sweep_id + hyperparameters + seed: what makes two ingredients the same grid point (None
    without a sweep_id: ingredients from elsewhere carry no such promise)."""
    record = checkpoint.ingredient or {}
    if not record.get("sweep_id"):
        return None
    return json.dumps([record["sweep_id"], record.get("hyperparameters"), record.get("seed")], sort_keys=True)


def drop_duplicate_runs(
    checkpoints: Sequence[Checkpoint],
) -> tuple[list[Checkpoint], list[tuple[Checkpoint, Checkpoint]]]:
    """(ingredients with each grid point once, [(dropped, the one kept)]).

    Two folders of one sweep with the same hyperparameters and seed are one grid point trained
    twice (e.g. under an old and a new run id): counting both would weight it double in the
    uniform soup and the ensemble. The first one given is kept.
    """
    kept: list[Checkpoint] = []
    first_of: dict[str, Checkpoint] = {}
    dropped = []
    for checkpoint in checkpoints:
        identity = _run_identity(checkpoint)
        if identity is not None and identity in first_of:
            dropped.append((checkpoint, first_of[identity]))
            continue
        if identity is not None:
            first_of[identity] = checkpoint
        kept.append(checkpoint)
    return kept, dropped


def first_difference(a: Checkpoint, b: Checkpoint) -> str | None:
    """What first makes `b` unmixable with `a` (checked cheapest first, headers only), or None."""
    for what, left, right in (
        ("architecture", a.config.get("architectures"), b.config.get("architectures")),
        ("model_type", a.config.get("model_type"), b.config.get("model_type")),
    ):
        if left != right:
            return f"{what}: {left} vs {right}"
    names_a, names_b = set(a), set(b)
    if names_a != names_b:
        only_a, only_b = sorted(names_a - names_b), sorted(names_b - names_a)
        if only_a:
            return f"parameter names: {only_a[0]!r} only in the first ({len(only_a)} such)"
        return f"parameter names: {only_b[0]!r} only in the second ({len(only_b)} such)"
    for name in a:
        if a.shape(name) != b.shape(name):
            return f"shape of {name!r}: {list(a.shape(name))} vs {list(b.shape(name))}"
    for name in a:
        if a.dtype(name) != b.dtype(name):
            return f"dtype of {name!r}: {a.dtype(name)} vs {b.dtype(name)}"
    if _label_map(a.config) != _label_map(b.config):
        return f"label map (config.json id2label): {_label_map(a.config)} vs {_label_map(b.config)}"
    difference = config_difference(a.config, b.config)
    if difference:
        return difference
    digest_a, digest_b = a.tokenizer_digest(), b.tokenizer_digest()
    if digest_a and digest_b and digest_a != digest_b:
        return "tokenizer files (different vocabulary or tokenizer settings)"
    for what, keys in (
        ("task (ingredient.json)", ("task",)),
        ("head_init_seed (ingredient.json; different heads do not average)", ("head_init_seed",)),
        ("split fingerprint (ingredient.json; scored on different held-out sets)", ("split", "fingerprint")),
    ):
        left, right = _ingredient_field(a, *keys), _ingredient_field(b, *keys)
        if left is not None and right is not None and left != right:
            return f"{what}: {left} vs {right}"
    base_a, base_b = _base_model_identity(a), _base_model_identity(b)
    if base_a and base_b and base_a.keys() == base_b.keys() and base_a != base_b:
        return f"base model (ingredient.json): {base_a} vs {base_b}"
    return None


def check_compatible(checkpoints: Sequence[Checkpoint]) -> None:
    """Raise a SoupError naming the first difference between the first ingredient and any other."""
    if not checkpoints:
        raise SoupError("no ingredients given")
    reference = checkpoints[0]
    for other in checkpoints[1:]:
        difference = first_difference(reference, other)
        if difference:
            raise SoupError(f"{reference.path} and {other.path} cannot be mixed: they differ in {difference}")

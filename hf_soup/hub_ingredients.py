"""Ingredients from the Hugging Face Hub: `--ingredients org/model-a org/model-b@revision ./local`.

    from hf_soup.hub_ingredients import resolve_ingredients
    resolved = resolve_ingredients(["org/a", "org/b@v1", "runs/rte"], allow_pickle=False)
    resolved["org/b@v1"].folder, resolved["org/b@v1"].commit      # the local snapshot, its commit sha

How a public fine-tune of one base becomes an ingredient: `snapshot_download` fetches only what a
soup needs (config, safetensors weights, tokenizer files — `hf_soup.checkpoints.TOKENIZER_FILES`,
the one list — and an `ingredient.json` when the repo has one) into the usual Hub cache, pinned to
the commit the revision resolved to, and that commit sha is recorded in soup.json. Pickled
`pytorch_model*.bin` weights are fetched only with --allow_pickle and only when the repo has no
safetensors (then `torch.load(weights_only=True)`, as for local folders).

Which arguments are Hub ids: an argument that exists on disk, or is a glob, is local; otherwise it
is a Hub id when it is `name` or `namespace/name` (+ `@revision`) and does not look like a path
(`hf_soup.models.looks_like_path`: `./x`, `/x`, `x/`, `a/b/c`), else a missing local folder. A
missing local folder with a Hub-like name (`runs/rte`) therefore reaches the Hub, and its error
says both: not a local folder, and not on the Hub.

Failures are one line (exit 2), never with the token: offline and not cached, 401, 404, gated, no
such revision, the endpoint unreachable.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_soup.checkpoints import MODEL_FILES, SAFE_INDEX, SAFE_SINGLE, TOKENIZER_FILES, weight_files
from hf_soup.errors import SoupError, causes, http_status
from hf_soup.ingredient import INGREDIENT_FILE

SAFETENSORS_PATTERNS = (SAFE_SINGLE, SAFE_INDEX, "model-*-of-*.safetensors")
PICKLE_PATTERNS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin")
SOUP_FILES = (*MODEL_FILES, *TOKENIZER_FILES, INGREDIENT_FILE)


@dataclass(frozen=True)
class HubIngredient:
    """One `--ingredients` argument resolved on the Hub."""

    argument: str  # as the user wrote it
    repo_id: str
    revision: str | None  # as asked (branch, tag, sha), None = the default branch
    commit: str  # the commit sha it resolved to: what soup.json records
    folder: Path  # the snapshot in the Hub cache

    @property
    def name(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id

    def describe(self) -> dict[str, Any]:
        """soup.json `ingredients[].hub`."""
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit}


def hub_reference(argument: str) -> tuple[str, str | None] | None:
    """(repo id, revision) when `argument` names a Hub model rather than a local path, else None."""
    if glob.has_magic(argument) or Path(argument).expanduser().exists():
        return None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from hf_soup.models import looks_like_path

    repo_id, at, revision = argument.partition("@")
    if looks_like_path(repo_id) or (at and not revision):
        return None
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return None
    return repo_id, revision or None


def resolve_ingredients(arguments: Sequence[str], *, allow_pickle: bool = False) -> dict[str, HubIngredient]:
    """{argument: HubIngredient} for the arguments that are Hub ids (downloaded now); local ones are left out."""
    resolved = {}
    for argument in arguments:
        reference = hub_reference(argument)
        if reference is not None and argument not in resolved:
            resolved[argument] = download(argument, *reference, allow_pickle=allow_pickle)
    return resolved


def download(argument: str, repo_id: str, revision: str | None, *, allow_pickle: bool) -> HubIngredient:
    """Snapshot what a soup needs of `repo_id@revision`; pickles only as a fallback, with --allow_pickle."""
    folder = _snapshot(argument, repo_id, revision, [*SOUP_FILES, *SAFETENSORS_PATTERNS])
    files, _ = weight_files(folder)
    if not files and allow_pickle:
        folder = _snapshot(argument, repo_id, folder.name, [*SOUP_FILES, *PICKLE_PATTERNS])
        files, _ = weight_files(folder)
    if not files:
        hint = "" if allow_pickle else " (a repo with only pickled pytorch_model.bin weights needs --allow_pickle)"
        raise SoupError(f"{argument}: no safetensors weights in {repo_id} at commit {folder.name}{hint}")
    # Cache layout: .../models--ns--name/snapshots/<commit sha>/ — the exact files merged.
    return HubIngredient(argument, repo_id, revision, folder.name, folder)


def _snapshot(argument: str, repo_id: str, revision: str | None, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except Exception as err:  # every failure of the download is one line naming the argument
        raise SoupError(describe_error(err, argument, repo_id, revision)) from None


def describe_error(err: BaseException, argument: str, repo_id: str, revision: str | None) -> str:
    """One line for a failed download: what happened and what to do; the token scrubbed out."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    chain = causes(err)
    endpoint = constants.ENDPOINT
    status = http_status(err)
    where = f"{argument}: not a local folder, and"
    if any(isinstance(c, RevisionNotFoundError) for c in chain):
        message = f"{argument}: {repo_id} on {endpoint} has no revision {revision!r} (branch, tag or commit)"
    elif any(isinstance(c, GatedRepoError) for c in chain):
        message = f"{where} {repo_id} is gated on {endpoint}: accept its terms there and use a token with access"
    elif status == 401 and not any(isinstance(c, RepositoryNotFoundError) for c in chain):
        message = (
            f"{argument}: authentication failed (401) on {endpoint}: the token (HF_TOKEN or the login cache) "
            "was rejected; check it or run `hf auth login`"
        )
    elif any(isinstance(c, RepositoryNotFoundError) for c in chain):
        private = " (or it is private and no token with access was given: HF_TOKEN or `hf auth login`)"
        message = f"{where} {endpoint} has no model repo {repo_id} ({status or 404}){private if status == 401 else ''}"
    elif any(isinstance(c, OfflineModeIsEnabled) for c in chain) or constants.is_offline_mode():
        message = f"{where} HF_HUB_OFFLINE is set and {repo_id} is not in the Hub cache; unset it to download"
    elif any(isinstance(c, LocalEntryNotFoundError) for c in chain):
        message = f"{where} {endpoint} cannot be reached (nor is {repo_id} in the Hub cache)"
    else:
        detail = " ".join(str(err).split())[:200]
        message = f"{argument}: cannot download {repo_id} from {endpoint} ({type(err).__name__}: {detail})"
    token = os.environ.get("HF_TOKEN")
    return message.replace(token, "***") if token else message

"""Push a soup folder to the Hugging Face Hub, with its model card, in one atomic commit.

    python -m hf_soup.publish soups/rte-greedy --repo_id you/rte-soup
    python -m hf_soup.publish soups/rte-greedy --repo-id you/rte-soup --private --license apache-2.0
    python -m hf_soup.publish soups/rte-greedy --repo_id you/rte-soup --revision exp1 --commit_message "..."
    python -m hf_soup.publish soups/rte-greedy --repo_id you/rte-soup --create_pr
    python -m hf_soup.publish soups/rte-greedy --repo_id you/rte-soup --dry_run        # no network
    python -m hf_soup.publish soups/rte-greedy --repo_id you/rte-soup --endpoint http://127.0.0.1:8123

Then anyone can `AutoModelForSequenceClassification.from_pretrained("you/rte-soup")`
(`AutoModelForSeq2SeqLM` for a t5-text2text soup; the card's snippet shows the right one).

What happens, in order (everything local comes before the first network call):
1. Validate the folder: `config.json`, safetensors weights (pickled `pytorch_model*.bin` is refused;
   every shard of a sharded index present), tokenizer files, `soup.json` (docs/FORMATS.md).
2. Round trip: config, tokenizer and model load with transformers from the folder (the class the
   model family needs); a weight the model expects but the files lack (e.g. a classifier head that would be randomly initialised)
   is an error.
3. Card: README.md + soup.png are generated from soup.json when missing; a generated card nobody
   edited is regenerated (so its snippet names the repo id; same soup.json, same bytes); a card a
   person edited is pushed as is. Its metadata must load with `huggingface_hub.ModelCard.load`.
4. `create_repo(exist_ok=True)` (and `create_branch` for `--revision`), then ONE `create_commit`:
   the files that belong (config, weights, tokenizer, soup.json, card, plot), plus deletions of
   stale weight files left on the remote by an earlier push (e.g. old shards). The client skips
   files whose remote hash already matches, so re-pushing an unchanged folder makes no commit.

Why `create_commit` and not `upload_folder`: with `hf_xet` installed, huggingface_hub 2.x's
`upload_folder` streams through a multi-commit pipeline that may split a folder into several
commits (e.g. above 100 MB of non-LFS content): a reader could then see weights without their
tokenizer or card. One commit is the atomic step: the model appears whole or not at all.

Token: `token=`, else `HF_TOKEN`, else the login cache (`huggingface_hub.get_token`). It is never
printed, logged or written, nor kept in the errors raised here. Errors are one line (exit 2):
401 (bad token), 403 (no write access), 404, 409 (conflict), an unreachable endpoint. Transient
failures (connection drops, 408/429/5xx) are retried with exponential backoff, a bounded number
of times; a retry after a commit that landed but whose reply was lost is a no-op, not a duplicate.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hf_soup.card import hub_base_model, is_generated_card, write_card
from hf_soup.checkpoints import TOKENIZER_FILES
from hf_soup.errors import SoupError, causes, cli_main, http_status
from hf_soup.quiet import quiet_transformers
from hf_soup.redact import local_name, redact, strip_local_paths
from hf_soup.soup_file import SOUP_FILE, read_soup

T = TypeVar("T")

WEIGHT_FILES = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
# Only these go to the Hub: a soup folder may also hold logs, caches or pickles that do not belong.
ALLOW_PATTERNS = (
    "config.json",
    "generation_config.json",
    *WEIGHT_FILES,
    *TOKENIZER_FILES,
    SOUP_FILE,
    "README.md",
    "soup.png",
)
# Remote files matching these that the new folder does not have are deleted in the same commit
# (an old push's shards or pickles would otherwise shadow or contradict the new weights).
STALE_PATTERNS = (
    "*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json",
    "tf_model.h5", "flax_model.msgpack",
)  # fmt: skip
PICKLED_WEIGHTS = ("pytorch_model*.bin", "pytorch_model.bin.index.json", "*.pt", "*.pth", "*.ckpt")
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
MAX_BACKOFF_S = 8.0


@dataclass
class FolderPlan:
    """What a push would upload, decided locally before any network call."""

    folder: Path
    soup: dict[str, Any]
    files: list[str]  # paths relative to folder, sorted
    skipped: list[str]  # present locally but not published
    card_note: str
    total_bytes: int


# ----------------------------------------------------------------------------- local checks


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def public_soup(soup: dict[str, Any]) -> dict[str, Any]:
    """soup.json as it is pushed: nothing of this machine's disk and no secret.

    The local soup.json keeps what a merge and the card need (the base model's folder, the data
    files' paths); the pushed copy names the base model by its Hub id (`--base_model_id`, or the
    recorded name when it is one) or by a folder name, the files by name (their sha256 stays
    beside), and any other path relative to the working folder.
    """
    public = json.loads(json.dumps(soup, default=str))
    base = public.get("base_model")
    if isinstance(base, dict):
        name = str(base.get("name_or_path") or "")
        hub_id = base.get("hub_id") or hub_base_model(name)
        base["name_or_path"] = hub_id or (local_name(name) if name else None)
    return redact(strip_local_paths(public))


def _check_weights(folder: Path, names: set[str]) -> None:
    pickled = sorted(n for n in names if _matches(n, PICKLED_WEIGHTS))
    if pickled:
        raise SoupError(
            f"{folder / pickled[0]}: pickled weights are not published (safetensors only); remove it or re-save with save_pretrained"
        )
    index = folder / "model.safetensors.index.json"
    shards = sorted(n for n in names if fnmatch.fnmatchcase(n, "model-*-of-*.safetensors"))
    if index.is_file():
        if "model.safetensors" in names:
            raise SoupError(f"{folder}: holds both model.safetensors and a sharded index; remove the stale one")
        try:
            needed = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise SoupError(f"{index}: field 'weight_map' is missing or unreadable") from err
        missing = [name for name in needed if name not in names]
        if missing:
            raise SoupError(f"{index}: shard {missing[0]} is missing from the folder")
        extra = [name for name in shards if name not in needed]
        if extra:
            raise SoupError(f"{folder / extra[0]}: stale shard not listed in model.safetensors.index.json; remove it")
        weight_files = needed
    elif "model.safetensors" in names:
        if shards:
            raise SoupError(f"{folder / shards[0]}: stale shard beside model.safetensors; remove it")
        weight_files = ["model.safetensors"]
    else:
        raise SoupError(f"{folder}: no model.safetensors (or sharded index) found: not a model folder")
    from safetensors import safe_open

    for name in weight_files:
        try:
            with safe_open(str(folder / name), framework="pt") as handle:
                if not list(handle.keys()):
                    raise SoupError(f"{folder / name}: holds no tensors")
        except SoupError:
            raise
        except Exception as err:  # safetensors raises its own error types for a bad header
            raise SoupError(f"{folder / name}: not a readable safetensors file ({err})") from err


def _prepare_card(folder: Path, repo_id: str, license: str | None, dry_run: bool) -> str:
    readme = folder / "README.md"
    if readme.is_file() and not is_generated_card(readme):
        from huggingface_hub import ModelCard

        try:
            ModelCard.load(readme)
        except Exception as err:
            raise SoupError(f"{readme}: metadata does not load with huggingface_hub ({err})") from err
        return "README.md edited by hand: pushed as is"
    base_model = None
    if readme.is_file():  # an untouched generated card: keep what it was generated with
        from huggingface_hub import ModelCard

        previous = ModelCard.load(readme, ignore_metadata_errors=True).data
        license, base_model = license or previous.license, previous.base_model
    action = "regenerated" if readme.is_file() else "generated"
    if not dry_run:
        write_card(folder, license=license, repo_id=repo_id, base_model=base_model)
        return f"README.md and soup.png {action} from soup.json"
    with tempfile.TemporaryDirectory(prefix="hf_soup_card-") as scratch:
        for name in (SOUP_FILE, "config.json"):
            if (folder / name).is_file():
                shutil.copy(folder / name, scratch)
        write_card(scratch, license=license, repo_id=repo_id, base_model=base_model)  # fail now, not later
    return f"README.md and soup.png would be {action} from soup.json"


def _round_trip(folder: Path) -> None:
    """Load the folder the way a user of the Hub repo will, once, before anything is sent.

    The model family in config.json decides the class (`hf_soup.models.model_class_for`):
    AutoModelForSequenceClassification, or AutoModelForSeq2SeqLM for a t5-text2text soup, whose
    weights hold no classification head.
    """
    try:
        from transformers import AutoConfig, AutoTokenizer

        from hf_soup.models import family_of, model_class_for

        config = AutoConfig.from_pretrained(folder)
        AutoTokenizer.from_pretrained(folder)
        model_class = model_class_for(family_of(config))
        with quiet_transformers():  # missing weights are checked below, in one line
            _model, info = model_class.from_pretrained(folder, output_loading_info=True)
    except Exception as err:
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise SoupError(f"{folder}: does not load with transformers ({type(err).__name__}: {first_line})") from err
    missing = info.get("missing_keys") or []
    mismatched = info.get("mismatched_keys") or []
    if missing or mismatched:
        name = sorted(missing)[0] if missing else sorted(mismatched)[0][0]
        raise SoupError(f"{folder}: weight {name} is missing or has the wrong shape: it would be randomly initialised")


def prepare_folder(
    folder: str | os.PathLike, *, repo_id: str, license: str | None = None, dry_run: bool = False
) -> FolderPlan:
    """Validate, write the card if needed, load once; return what would be uploaded. No network."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SoupError(f"{folder}: not a folder")
    names = {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
    if "config.json" not in names:
        raise SoupError(f"{folder / 'config.json'}: not found (not a model folder)")
    try:
        json.loads((folder / "config.json").read_text())
    except ValueError as err:
        raise SoupError(f"{folder / 'config.json'}: not readable JSON ({err})") from err
    _check_weights(folder, names)
    if not names & {"tokenizer.json", "tokenizer_config.json"}:
        raise SoupError(
            f"{folder}: no tokenizer files (tokenizer.json / tokenizer_config.json); save the tokenizer too"
        )
    soup = read_soup(folder)
    _round_trip(folder)
    card_note = _prepare_card(folder, repo_id, license, dry_run)
    names = {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
    if dry_run and not (folder / "README.md").is_file():
        names |= {"README.md", "soup.png"}
    files = sorted(n for n in names if _matches(n, ALLOW_PATTERNS))
    skipped = sorted(names - set(files))
    total = sum((folder / n).stat().st_size for n in files if (folder / n).is_file())
    return FolderPlan(folder, soup, files, skipped, card_note, total)


# ----------------------------------------------------------------------------- network


def _httpx():
    try:
        import httpx2 as httpx  # huggingface_hub 2.x's HTTP client
    except ImportError:  # pragma: no cover - other huggingface_hub versions
        import httpx
    return httpx


def _transport_errors() -> tuple[type[BaseException], ...]:
    return (_httpx().TransportError, ConnectionError, TimeoutError)


def _is_transient(err: BaseException) -> bool:
    from huggingface_hub.errors import OfflineModeIsEnabled

    if any(isinstance(cause, OfflineModeIsEnabled) for cause in causes(err)):
        return False
    transport = _transport_errors()
    if any(isinstance(cause, transport) for cause in causes(err)):
        return True
    return http_status(err) in RETRY_STATUS


def _describe(err: BaseException, *, repo_id: str, endpoint: str, attempts: int, token: str | None) -> str:
    """One line for the user; never the token (scrubbed even from server messages)."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    status = http_status(err)
    server = next((c.server_message for c in causes(err) if getattr(c, "server_message", None)), None)
    detail = " ".join((server or str(err)).split())[:300]
    if token:
        detail = detail.replace(token, "***")
    namespace = repo_id.split("/")[0]
    if any(isinstance(c, OfflineModeIsEnabled) for c in causes(err)):
        return "HF_HUB_OFFLINE is set (offline mode): unset it to publish"
    if status == 401:
        return f"{endpoint}: authentication failed (401): the token (token=, HF_TOKEN or the login cache) was rejected; check it or run `hf auth login`"
    if status == 403:
        return f"{repo_id}: permission denied (403): your token cannot write to namespace '{namespace}' ({detail}); use a write token or a namespace you belong to"
    if status == 404:
        return f"{repo_id}: not found (404) on {endpoint}: {detail}"
    if status in (409, 412):
        return f"{repo_id}: conflict ({status}): {detail}; another push may have happened at the same time, re-run to retry"
    if status is not None:
        suffix = f" after {attempts} attempts" if attempts > 1 else ""
        return f"{repo_id}: the Hub answered {status}{suffix}: {detail}"
    if any(isinstance(c, (ConnectionRefusedError, _httpx().ConnectError)) for c in causes(err)):
        return f"{endpoint}: unreachable after {attempts} attempts ({type(err).__name__}: {detail})"
    if any(isinstance(c, _transport_errors()) for c in causes(err)):
        return f"{endpoint}: connection failed after {attempts} attempts ({type(err).__name__}: {detail})"
    return f"{repo_id}: {detail}"


def _with_retries(
    what: str,
    action: Callable[[], T],
    *,
    attempts: int,
    backoff_s: float,
    describe: Callable[[BaseException, int], str],
) -> T:
    """Run `action`, retrying transient failures with exponential backoff, at most `attempts` times."""
    from huggingface_hub.errors import HfHubHTTPError

    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (HfHubHTTPError, ValueError, OSError, RuntimeError, *_transport_errors()) as err:
            if attempt >= attempts or not _is_transient(err):
                raise SoupError(describe(err, attempt)) from None  # `from None`: no request objects ride along
            wait = min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
            print(f"{what}: {type(err).__name__}, retrying in {wait:.1f}s ({attempt}/{attempts})", file=sys.stderr)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _resolve_token(token: str | None) -> str:
    if token:
        return token
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise SoupError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (a write token is needed to publish)"
        )
    return found


def _public_soup_bytes(folder: Path) -> bytes:
    return (json.dumps(public_soup(read_soup(folder)), indent=2) + "\n").encode()


def _default_message(soup: dict[str, Any]) -> str:
    kept = sum(1 for i in soup["ingredients"] if i.get("kept")) or len(soup["ingredients"])
    return f"Upload {soup['name']}: {soup['recipe']} soup of {kept}/{len(soup['ingredients'])} {soup['task']} ingredients (hf_soup)"


def publish_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    dry_run: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    license: str | None = None,
    max_attempts: int = 4,
    backoff_s: float = 0.5,
) -> str:
    """Publish a soup folder to `repo_id`; return the commit URL (or, with `dry_run`, a summary).

    Raises SoupError (one line, no token) for every user-facing failure. Prints progress lines.
    """
    from huggingface_hub import constants

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise SoupError(f"--repo_id {repo_id!r}: expected namespace/name")
    plan = prepare_folder(folder, repo_id=repo_id, license=license, dry_run=dry_run)
    target = f"{repo_id}@{revision or 'main'}" + (" (as a pull request)" if create_pr else "")
    if dry_run:
        skipped = f"; not published: {', '.join(plan.skipped)}" if plan.skipped else ""
        return (
            f"dry run: would push {len(plan.files)} files ({plan.total_bytes / 1e6:.1f} MB) from {plan.folder} to "
            f"{target}{' (private)' if private else ''}: {', '.join(plan.files)}; {plan.card_note}{skipped}"
        )
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    from hf_soup import __version__

    if constants.is_offline_mode():
        raise SoupError("HF_HUB_OFFLINE is set (offline mode): unset it to publish")
    token = _resolve_token(token)
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token, library_name="hf_soup", library_version=__version__)

    def retried(what: str, action: Callable[[], T]) -> T:
        def describe(err: BaseException, attempt: int) -> str:
            return _describe(err, repo_id=repo_id, endpoint=endpoint, attempts=attempt, token=token)

        return _with_retries(what, action, attempts=max_attempts, backoff_s=backoff_s, describe=describe)

    print(f"publishing {plan.folder} to {target} on {endpoint} ({plan.card_note})")
    retried("create_repo", lambda: api.create_repo(repo_id, private=private, exist_ok=True))
    if revision and revision != constants.DEFAULT_REVISION and not revision.startswith("refs/pr/"):
        retried("create_branch", lambda: api.create_branch(repo_id, branch=revision, exist_ok=True))
    before = retried("model_info", lambda: api.model_info(repo_id, revision=revision))
    if private and not before.private:
        print(
            f"warning: {repo_id} already exists and is public; --private only applies when creating a repo",
            file=sys.stderr,
        )

    def commit():
        # Fresh operations each attempt (the client mutates them); remote listing re-read too.
        remote = [s.rfilename for s in api.model_info(repo_id, revision=revision).siblings or []]
        deletions = [
            CommitOperationDelete(path) for path in remote if _matches(path, STALE_PATTERNS) and path not in plan.files
        ]
        additions = [
            CommitOperationAdd(
                path_in_repo=name,
                path_or_fileobj=_public_soup_bytes(plan.folder) if name == SOUP_FILE else str(plan.folder / name),
            )
            for name in plan.files
        ]
        return api.create_commit(
            repo_id,
            operations=[*deletions, *additions],
            commit_message=commit_message or _default_message(plan.soup),
            revision=revision,
            create_pr=create_pr,
        )

    info = retried("create_commit", commit)
    if info.oid == before.sha and not info.pr_url:
        print(f"no changes: {repo_id} already matches {plan.folder} (no new commit): {info.commit_url}")
    else:
        print(f"pushed {len(plan.files)} files to {repo_id}: {info.commit_url}")
    if info.pr_url:
        print(f"pull request: {info.pr_url}")
    return info.commit_url


# ----------------------------------------------------------------------------- CLI


@dataclass
class PublishArguments:
    repo_id: str = field(metadata={"help": "Hub repo to push to, namespace/name"})
    private: bool = field(default=False, metadata={"help": "Create the repo private (only applies when it is created)"})
    revision: str | None = field(
        default=None, metadata={"help": "Branch to push to (created if missing; default main)"}
    )
    commit_message: str | None = field(default=None, metadata={"help": "Commit summary (default: describes the soup)"})
    create_pr: bool = field(default=False, metadata={"help": "Open a pull request instead of pushing to the branch"})
    dry_run: bool = field(default=False, metadata={"help": "Validate and list what would be pushed; no network"})
    endpoint: str | None = field(
        default=None, metadata={"help": "Hub endpoint (default: HF_ENDPOINT or huggingface.co)"}
    )
    license: str | None = field(
        default=None, metadata={"help": "License id for the card (default: the local base model card's)"}
    )
    max_attempts: int = field(default=4, metadata={"help": "Attempts per network step on transient errors"})


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(PublishArguments)
    parser.add_argument("folder", help="Soup folder (written by python -m hf_soup.merge)")
    args, positional = parser.parse_args_into_dataclasses(args=argv)
    result = publish_folder(
        positional.folder,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        create_pr=args.create_pr,
        dry_run=args.dry_run,
        endpoint=args.endpoint,
        license=args.license,
        max_attempts=args.max_attempts,
    )
    if args.dry_run:
        print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main(main))

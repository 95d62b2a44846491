"""A small Hub-compatible HTTP server on 127.0.0.1, for tests and offline demos of publishing.

Why: the real Hub is not reachable from CI, and no installable self-hosted Hub accepts uploads.
This server implements the part of the Hub API that the *unmodified* `huggingface_hub` 2.x client
and `transformers` use to create a repo, push (regular uploads, and the git-LFS batch API used
with `HF_HUB_DISABLE_XET=1`), read repo info and file trees, and download (`hf_hub_download`,
`snapshot_download`, `from_pretrained`). Repos live in a folder (a temp dir by default); a commit
is applied to a branch in one step under a lock, so it lands whole or not at all.

    python -m hf_soup.testing.hub                    # prints HF_ENDPOINT / HF_TOKEN, serves until Ctrl-C
    python -m hf_soup.testing.hub --lfs --root /tmp/hub --port 8123

    from hf_soup.testing.hub import HubServer
    with HubServer(lfs=True) as hub:                 # free port on 127.0.0.1, temp dir for repos
        env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_XET": "1"}
        ...                                          # run the client in a subprocess with `env`
        hub.commits("ns/name"); hub.is_private("ns/name"); hub.read_file("ns/name", "config.json")
        hub.add_fault(r"/commit/", method="POST", action="drop", times=1)   # fault injection

Upload modes: `HF_ENDPOINT` and `HF_HUB_DISABLE_XET` are read when `huggingface_hub` is imported.
With `hf_xet` installed and Xet enabled the client would push LFS files through Xet storage,
which this server does not implement, so by default (`lfs=False`) the server answers `regular`
for every file (contents travel base64-encoded inside the commit). With `lfs=True` it answers
`lfs` for weights and binary files like the Hub does, and the client (run with
`HF_HUB_DISABLE_XET=1`) uses the LFS batch API: POST batch, PUT the bytes (optionally in parts),
POST verify, then the commit references them by sha256.

Everything is bounded: request bodies (`max_body_bytes`), concurrent requests, socket timeouts,
the request log, and the number of operations in one commit. It binds to loopback only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
LFS_THRESHOLD_BYTES = 10 * 1024 * 1024  # the Hub stores files above 10 MB in LFS
MAX_COMMIT_OPERATIONS = 25_000
MAX_LINE_BYTES = 4 * 1024 * 1024 * 1024
CHUNK = 1024 * 1024

# The Hub's default `.gitattributes`: paths matching these go to LFS (plus big or binary files).
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
    "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "*.tar.*", "*.tar", "*.tflite",
    "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)  # fmt: skip
DEFAULT_GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)

# What the Hub's metadata validation accepts (subset of huggingface.js `licenses` / `pipelines`).
LICENSES = frozenset(  # a word list reads better than 80 quoted items
    "apache-2.0 mit openrail openrail++ bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 "  # noqa: SIM905
    "bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc "
    "cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 "
    "cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 "
    "cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 "
    "eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c "
    "ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr "
    "deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 "
    "gemma unknown other".split()
)
PIPELINE_TAGS = frozenset(
    "text-classification token-classification table-question-answering question-answering text2text-generation "  # noqa: SIM905
    "zero-shot-classification translation summarization feature-extraction text-generation fill-mask "
    "sentence-similarity text-to-speech text-to-audio automatic-speech-recognition audio-to-audio "
    "audio-classification voice-activity-detection depth-estimation image-classification object-detection "
    "image-segmentation text-to-image image-to-text image-to-image image-to-video unconditional-image-generation "
    "video-classification reinforcement-learning robotics tabular-classification tabular-regression "
    "tabular-to-text table-to-text multiple-choice text-ranking text-retrieval time-series-forecasting "
    "text-to-video image-text-to-text visual-question-answering document-question-answering "
    "zero-shot-image-classification graph-ml mask-generation zero-shot-object-detection text-to-3d image-to-3d "
    "image-feature-extraction video-text-to-text keypoint-detection visual-document-retrieval any-to-any other".split()
)
YAML_BLOCK = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


# ----------------------------------------------------------------------------- users and faults


@dataclass(frozen=True)
class HubUser:
    """Who a token belongs to. `orgs` may contain "*" (write anywhere); `write=False` is a read token."""

    name: str
    orgs: tuple[str, ...] = ()
    write: bool = True

    def member_of(self, namespace: str) -> bool:
        return namespace == self.name or namespace in self.orgs or "*" in self.orgs

    def can_write(self, namespace: str) -> bool:
        return self.write and self.member_of(namespace)


@dataclass
class Fault:
    """One injected failure: the next `times` requests whose path matches `path` (a regex searched in
    the URL path) and `method` (None: any) fail with `action`:

    * "drop": read part of the request body, then close the connection (nothing is applied);
    * "drop_after": apply the request, then close without a reply (the client never hears back);
    * "status": answer `status` (e.g. 503) with a JSON error (nothing is applied);
    * "stall": hold the request unanswered (nothing is applied) until the server stops, then drop it:
      a client that hangs mid-upload, for tests that kill it there.
    """

    path: str
    method: str | None = None
    action: str = "drop"
    status: int = 503
    times: int = 1
    hits: int = 0

    def __post_init__(self) -> None:
        if self.action not in ("drop", "drop_after", "status", "stall"):
            raise ValueError(f"Fault.action must be drop, drop_after, status or stall, not {self.action!r}")
        self._pattern = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return (
            self.hits < self.times
            and (self.method is None or self.method == method)
            and bool(self._pattern.search(path))
        )


# ----------------------------------------------------------------------------- storage


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub calls a regular file's `oid`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class _File:
    sha256: str
    git_sha1: str  # of the content
    size: int
    lfs: bool

    @property
    def blob_id(self) -> str:
        """The git object id the Hub reports: of the pointer file for LFS files, else of the content."""
        return git_blob_sha1(lfs_pointer(self.sha256, self.size)) if self.lfs else self.git_sha1

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1

    def tree_entry(self, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.blob_id, "size": self.size, "path": path}
        if self.lfs:
            entry["lfs"] = {
                "oid": self.sha256,
                "size": self.size,
                "pointerSize": len(lfs_pointer(self.sha256, self.size)),
            }
        return entry


@dataclass
class _Commit:
    oid: str
    parents: list[str]
    title: str
    message: str
    author: str
    date: str
    files: dict[str, _File]


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)
    pull_requests: list[str] = field(default_factory=list)  # refs/pr/N -> head commit (index N-1)
    commits: dict[str, _Commit] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.repo_type}:{self.repo_id}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@dataclass
class _Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # streamed from disk instead of `body`
    offset: int = 0
    length: int = 0


def _json(payload: Any, status: int = 200, **headers: str) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})


def _error_reply(err: _HttpError) -> _Reply:
    headers = {"X-Error-Message": " ".join(err.message.split())[:500]}
    if err.code:
        headers["X-Error-Code"] = err.code
    return _json({"error": err.message, **err.extra}, err.status, **headers)


# ----------------------------------------------------------------------------- metadata validation


def _front_matter(content: str) -> tuple[Any, list[str]]:
    match = YAML_BLOCK.search(content)
    if match is None:
        return None, []
    try:
        return yaml.safe_load(match.group(2)), []
    except yaml.YAMLError as err:
        return None, [f"YAML parse error: {' '.join(str(err).split())}"]


def _is_str_list(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _validate_model_index(model_index: Any) -> list[str]:
    errors: list[str] = []

    def need(obj: Any, key: str, where: str, kind: type | tuple = str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            errors.append(f'"{where}.{key}" is required')
            return None
        if not isinstance(obj[key], kind):
            errors.append(f'"{where}.{key}" must be of type {getattr(kind, "__name__", kind)}')
            return None
        return obj[key]

    if not isinstance(model_index, list) or not model_index:
        return ['"model-index" must be a non-empty array']
    for i, entry in enumerate(model_index):
        where = f"model-index[{i}]"
        need(entry, "name", where)
        results = need(entry, "results", where, list) or []
        for j, result in enumerate(results):
            rwhere = f"{where}.results[{j}]"
            task = need(result, "task", rwhere, dict)
            if task is not None:
                need(task, "type", f"{rwhere}.task")
            dataset = need(result, "dataset", rwhere, dict)
            if dataset is not None:
                need(dataset, "type", f"{rwhere}.dataset")
                need(dataset, "name", f"{rwhere}.dataset")
                for optional in ("config", "split", "revision"):
                    if optional in dataset and not isinstance(dataset[optional], str):
                        errors.append(f'"{rwhere}.dataset.{optional}" must be of type string')
            metrics = need(result, "metrics", rwhere, list)
            if metrics == []:
                errors.append(f'"{rwhere}.metrics" must contain at least 1 item')
            for k, metric in enumerate(metrics or []):
                need(metric, "type", f"{rwhere}.metrics[{k}]")
                if isinstance(metric, dict) and "value" not in metric:
                    errors.append(f'"{rwhere}.metrics[{k}].value" is required')
                if isinstance(metric, dict) and "verified" in metric and not isinstance(metric["verified"], bool):
                    errors.append(f'"{rwhere}.metrics[{k}].verified" must be of type boolean')
    return errors


def validate_metadata(content: str, repo_type: str = "model") -> tuple[list[str], list[str]]:
    """The checks the Hub's `/api/validate-yaml` makes on a card's YAML block: (errors, warnings)."""
    metadata, errors = _front_matter(content)
    if errors:
        return errors, []
    if metadata is None:
        return [], ["empty or missing yaml metadata in repo card"]
    if not isinstance(metadata, dict):
        return ["metadata must be a YAML mapping"], []
    if "license" in metadata and (not isinstance(metadata["license"], str) or metadata["license"] not in LICENSES):
        errors.append(f'"license" must be one of the Hub licenses, got {metadata["license"]!r}')
    for key in ("tags", "datasets", "metrics", "language"):
        if key in metadata and not _is_str_list(metadata[key]):
            errors.append(f'"{key}" must be a string or an array of strings')
    if "library_name" in metadata and not isinstance(metadata["library_name"], str):
        errors.append('"library_name" must be a string')
    if repo_type == "model":
        if "pipeline_tag" in metadata and metadata["pipeline_tag"] not in PIPELINE_TAGS:
            errors.append(f'"pipeline_tag" is not a known pipeline: {metadata["pipeline_tag"]!r}')
        if "base_model" in metadata:
            base = metadata["base_model"]
            names = [base] if isinstance(base, str) else base if _is_str_list(base) else None
            if names is None:
                errors.append('"base_model" must be a string or an array of strings')
            for name in names or []:
                if not MODEL_ID.match(name):
                    errors.append(f'"base_model" is not a valid model id: {name!r}')
        if "model-index" in metadata:
            errors.extend(_validate_model_index(metadata["model-index"]))
    return errors, []


# ----------------------------------------------------------------------------- the server


class HubServer:
    """A Hub-compatible server on 127.0.0.1 (see the module docstring). Start/stop it with
    `start()`/`stop()` or as a context manager; `endpoint` and `token` are what clients need."""

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        lfs: bool = False,
        users: Mapping[str, HubUser] | None = None,
        multipart_chunk_size: int | None = None,
        max_body_bytes: int = 4 * 1024**3,
        max_concurrent_requests: int = 32,
        socket_timeout_s: float = 60.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"HubServer binds to loopback only, not {host!r}")
        self._tmp = None if root is not None else tempfile.TemporaryDirectory(prefix="hf_soup_hub-")
        self.root = Path(root if root is not None else self._tmp.name)
        self.lfs = lfs
        self.multipart_chunk_size = multipart_chunk_size
        self.max_body_bytes = max_body_bytes
        self.socket_timeout_s = socket_timeout_s
        self.host, self._port = host, port
        if users is None:
            users = {f"hf_local_{secrets.token_hex(16)}": HubUser("local-user", orgs=("*",))}
        self.users: dict[str, HubUser] = dict(users)
        self.faults: list[Fault] = []
        self.requests: deque[tuple[str, str, int]] = deque(maxlen=2000)  # (method, path, status)
        self.unhandled: deque[tuple[str, str]] = deque(maxlen=200)  # requests no route matched
        self._lock = threading.RLock()
        self._slots = threading.BoundedSemaphore(max_concurrent_requests)
        self._secret = secrets.token_bytes(32)
        self._repos: dict[str, _Repo] = {}
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # wakes requests held by a "stall" fault
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)
        self._load_state()

    # -------------------------------------------------------------- lifecycle

    @property
    def token(self) -> str:
        """A token with write access (the first one configured)."""
        return next(token for token, user in self.users.items() if user.write)

    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            raise RuntimeError("HubServer is not running: call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._httpd.server_address[1]}"

    def start(self) -> HubServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("_Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        self._httpd = server_class((self.host, self._port), _Handler)
        self._httpd.hub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hf-soup-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:  # keep-alive connections outlive serve_forever(): cut them too
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- test helpers

    def add_user(self, name: str, *, orgs: tuple[str, ...] = (), write: bool = True) -> str:
        """Register a user and return a fresh token for them."""
        token = f"hf_local_{secrets.token_hex(16)}"
        self.users[token] = HubUser(name, orgs, write)
        return token

    def add_fault(
        self, path: str, *, method: str | None = None, action: str = "drop", status: int = 503, times: int = 1
    ) -> Fault:
        fault = Fault(path, method, action, status, times)
        with self._lock:
            self.faults.append(fault)
        return fault

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        return f"{repo_type}:{repo_id}" in self._repos

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        return self._repo(repo_type, repo_id).private

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[dict[str, Any]]:
        """The history of `revision`, newest first: oid, title, message and {path: sha256}."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            oid: str | None = self._resolve(repo, revision)
            history = []
            while oid is not None and len(history) < 10_000:
                commit = repo.commits[oid]
                files = {path: entry.sha256 for path, entry in commit.files.items()}
                history.append({"oid": oid, "title": commit.title, "message": commit.message, "files": files})
                oid = commit.parents[0] if commit.parents else None
            return history

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, dict[str, Any]]:
        """{path: {"sha256", "size", "lfs"}} at `revision`."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            commit = repo.commits[self._resolve(repo, revision)]
            return {path: {"sha256": f.sha256, "size": f.size, "lfs": f.lfs} for path, f in commit.files.items()}

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        sha256 = self.files(repo_id, revision, repo_type)[path]["sha256"]
        return self._object_path(sha256).read_bytes()

    # -------------------------------------------------------------- state

    def _state_path(self) -> Path:
        return self.root / "state.json"

    def _load_state(self) -> None:
        if not self._state_path().is_file():
            return
        raw = json.loads(self._state_path().read_text())
        for item in raw["repos"]:
            commits = {
                oid: _Commit(**{**c, "files": {p: _File(**f) for p, f in c["files"].items()}})
                for oid, c in item.pop("commits").items()
            }
            repo = _Repo(**item, commits=commits)
            self._repos[repo.key] = repo

    def _save_state(self) -> None:
        payload = {"repos": [dataclasses.asdict(repo) for repo in self._repos.values()]}
        tmp = self._state_path().with_suffix(f".tmp-{threading.get_ident()}")
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, self._state_path())

    def _object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    def _store_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        dest = self._object_path(sha256)
        if not dest.exists():
            dest.parent.mkdir(exist_ok=True)
            tmp = self.root / "uploads" / f"{sha256}.{secrets.token_hex(4)}"
            tmp.write_bytes(data)
            os.replace(tmp, dest)
        return sha256

    def _repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get(f"{repo_type}:{repo_id}")
        if repo is None:
            raise _HttpError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> str:
        """Branch name, refs/heads/x, refs/pr/N or a commit oid -> commit oid."""
        name = revision.removeprefix("refs/heads/")
        if name in repo.branches:
            return repo.branches[name]
        pr = re.fullmatch(r"refs/pr/(\d+)", revision)
        if pr and 1 <= int(pr.group(1)) <= len(repo.pull_requests):
            return repo.pull_requests[int(pr.group(1)) - 1]
        if COMMIT_RE.match(revision) and revision in repo.commits:
            return revision
        raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _new_commit(
        self, repo: _Repo, parent: str | None, title: str, message: str, author: str, files: dict[str, _File]
    ) -> _Commit:
        seed = json.dumps(
            [
                repo.key,
                parent,
                title,
                message,
                sorted((p, f.sha256) for p, f in files.items()),
                time.time_ns(),
                secrets.token_hex(4),
            ]
        )
        commit = _Commit(
            hashlib.sha1(seed.encode()).hexdigest(), [parent] if parent else [], title, message, author, _now(), files
        )
        repo.commits[commit.oid] = commit
        return commit

    def _upload_mode(self, path: str, size: int, sample: bytes) -> str:
        if not self.lfs or size == 0:
            return "regular"
        name = path.rsplit("/", 1)[-1]
        if size > LFS_THRESHOLD_BYTES or b"\0" in sample or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS):
            return "lfs"
        return "regular"

    def _sign(self, *parts: str) -> str:
        return hmac.new(self._secret, ":".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    # -------------------------------------------------------------- access control

    def user_for(self, authorization: str | None) -> HubUser | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        user = self.users.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise _HttpError(401, "Invalid credentials in Authorization header")
        return user

    def _readable(self, repo_type: str, repo_id: str, user: HubUser | None) -> _Repo:
        repo = self._repo(repo_type, repo_id)
        if repo.private and (user is None or not user.member_of(repo_id.split("/")[0])):
            if user is None:
                raise _HttpError(401, "Repository not found", "RepoNotFound")
            raise _HttpError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _writable(self, repo_type: str, repo_id: str, user: HubUser | None) -> _Repo:
        repo = self._readable(repo_type, repo_id, user)
        if user is None:
            raise _HttpError(401, "You must be authenticated to write to a repository")
        if not user.can_write(repo_id.split("/")[0]):
            raise _HttpError(403, f"You don't have the rights to write to {repo_id}")
        return repo


# ----------------------------------------------------------------------------- request handling


class _Body:
    """The request body, read lazily and bounded: Content-Length or chunked transfer encoding."""

    def __init__(self, rfile: Any, headers: Any, limit: int) -> None:
        self.rfile = rfile
        self.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self.remaining = 0 if self.chunked else int(headers.get("Content-Length") or 0)
        if self.remaining > limit:
            raise _HttpError(413, f"Request body too large ({self.remaining} > {limit} bytes)")
        self.limit, self.read_bytes, self.done = limit, 0, not self.chunked and self.remaining == 0
        self._chunk_left = 0

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        while not self.done:
            if self.chunked:
                if self._chunk_left == 0:
                    line = self.rfile.readline(1024)
                    if not line:
                        raise ConnectionError("client closed the connection mid-body")
                    self._chunk_left = int(line.split(b";")[0].strip() or b"0", 16)
                    if self._chunk_left == 0:
                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass
                        self.done = True
                        return
                data = self.rfile.read(min(size, self._chunk_left))
                self._chunk_left -= len(data)
                if self._chunk_left == 0:
                    self.rfile.readline(8)
            else:
                data = self.rfile.read(min(size, self.remaining))
                self.remaining -= len(data)
                self.done = self.remaining == 0
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            self.read_bytes += len(data)
            if self.read_bytes > self.limit:
                raise _HttpError(413, f"Request body too large (> {self.limit} bytes)")
            yield data

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def lines(self) -> Iterator[bytes]:
        """NDJSON lines; a line (a base64 file of 100+ MB) is joined once, not grown chunk by chunk."""
        parts: list[bytes] = []
        for data in self.chunks():
            while (end := data.find(b"\n")) >= 0:
                line = b"".join([*parts, data[:end]])
                parts, data = [], data[end + 1 :]
                if line.strip():
                    yield line
            parts.append(data)
        line = b"".join(parts)
        if line.strip():
            yield line

    def drain(self) -> None:
        for _ in self.chunks():
            pass

    def json(self) -> Any:
        raw = self.read_all()
        try:
            return json.loads(raw or b"{}")
        except ValueError as err:
            raise _HttpError(400, f"Invalid JSON body: {err}") from err


_REPO = r"(?P<ns>[^/]+)/(?P<name>[^/]+)"
_API = rf"^/api/(?P<kind>models|datasets|spaces)/{_REPO}"
_GIT = rf"^/(?:(?P<kind>datasets|spaces)/)?{_REPO}\.git/info/lfs/objects"
ROUTES: list[tuple[str, re.Pattern, str]] = [
    (method, re.compile(pattern), handler)
    for method, pattern, handler in (
        ("POST", r"^/api/repos/create$", "create_repo"),
        ("DELETE", r"^/api/repos/delete$", "delete_repo"),
        ("POST", r"^/api/validate-yaml$", "validate_yaml"),
        ("GET", r"^/api/whoami-v2$", "whoami"),
        ("GET", r"^/api/agent-harnesses$", "agent_harnesses"),
        ("GET", rf"{_API}$", "repo_info"),
        ("GET", rf"{_API}/revision/(?P<rev>[^/]+)$", "repo_info"),
        ("GET", rf"{_API}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$", "tree"),
        ("POST", rf"{_API}/paths-info/(?P<rev>[^/]+)$", "paths_info"),
        ("GET", rf"{_API}/refs$", "refs"),
        ("GET", rf"{_API}/commits/(?P<rev>[^/]+)$", "list_commits"),
        ("POST", rf"{_API}/preupload/(?P<rev>[^/]+)$", "preupload"),
        ("POST", rf"{_API}/commit/(?P<rev>[^/]+)$", "commit"),
        ("POST", rf"{_API}/branch/(?P<branch>[^/]+)$", "create_branch"),
        ("DELETE", rf"{_API}/branch/(?P<branch>[^/]+)$", "delete_branch"),
        ("PUT", rf"{_API}/settings$", "settings"),
        ("GET", rf"{_API}/xet-(?:read|write)-token/(?P<rev>[^/]+)$", "xet_token"),
        ("POST", rf"{_GIT}/batch$", "lfs_batch"),
        ("POST", rf"{_GIT}/verify$", "lfs_verify"),
        ("PUT", r"^/lfs-upload/(?P<oid>[0-9a-f]{64})(?:/part/(?P<part>\d+))?$", "lfs_put"),
        ("POST", r"^/lfs-upload/(?P<oid>[0-9a-f]{64})/complete$", "lfs_complete"),
        ("GET", rf"^/(?:(?P<kind>datasets|spaces)/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
        ("HEAD", rf"^/(?:(?P<kind>datasets|spaces)/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
    )
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hf-soup-local-hub/1"

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def setup(self) -> None:
        self.timeout = self.hub.socket_timeout_s
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the hub keeps its own log
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    # -------------------------------------------------------------- plumbing

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        if not self.hub._slots.acquire(timeout=30):
            self._send(_error_reply(_HttpError(503, "Server busy")))
            return
        try:
            body = _Body(self.rfile, self.headers, self.hub.max_body_bytes)
        except _HttpError as err:
            self.close_connection = True
            self._send(_error_reply(err))
            self.hub._slots.release()
            return
        try:
            fault = self._take_fault(path)
            if fault is not None and fault.action == "stall":
                self.hub._stopping.wait()
            if fault is not None and fault.action in ("drop", "stall"):
                self._drop(body)
                return
            if fault is not None and fault.action == "status":
                body.drain()
                self._send(_error_reply(_HttpError(fault.status, f"Injected failure ({fault.status})")))
                return
            reply = self._route(path, query, body)
            body.drain()
            if fault is not None and fault.action == "drop_after":
                self._drop(body)
                return
            self._send(reply)
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True
        finally:
            self.hub._slots.release()

    def _route(self, path: str, query: dict[str, list[str]], body: _Body) -> _Reply:
        try:
            user = self.hub.user_for(self.headers.get("Authorization"))
            for method, pattern, name in ROUTES:
                match = pattern.match(path)
                if match and method == self.command:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    return getattr(self, f"_h_{name}")(params, query, body, user)
            self.hub.unhandled.append((self.command, path))
            raise _HttpError(404, f"Not implemented by the local hub: {self.command} {path}")
        except _HttpError as err:
            if err.status == 413:
                self.close_connection = True
            return _error_reply(err)

    def _take_fault(self, path: str) -> Fault | None:
        with self.hub._lock:
            for fault in self.hub.faults:
                if fault.matches(self.command, path):
                    fault.hits += 1
                    return fault
        return None

    def _drop(self, body: _Body) -> None:
        """Close the connection without a reply, after reading part of the body (a network cut)."""
        with contextlib.suppress(Exception):
            for seen, _ in enumerate(body.chunks(64 * 1024)):
                if seen >= 1:
                    break
        self.hub.requests.append((self.command, urlsplit(self.path).path, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, reply: _Reply) -> None:
        self.hub.requests.append((self.command, urlsplit(self.path).path, reply.status))
        length = reply.length if reply.file is not None else len(reply.body)
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if reply.file is None:
            self.wfile.write(reply.body)
            return
        with open(reply.file, "rb") as handle:
            handle.seek(reply.offset)
            left = reply.length
            while left > 0:
                data = handle.read(min(CHUNK, left))
                if not data:
                    break
                self.wfile.write(data)
                left -= len(data)

    def _base_url(self) -> str:
        return f"http://{self.headers.get('Host') or self.server.server_address[0]}"

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self._base_url()}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    @staticmethod
    def _ids(params: dict[str, str]) -> tuple[str, str]:
        return REPO_TYPES.get(params.get("kind") or "models", "model"), f"{params['ns']}/{params['name']}"

    # -------------------------------------------------------------- repos

    def _h_create_repo(self, params, query, body, user) -> _Reply:
        payload = body.json()
        if user is None:
            raise _HttpError(401, "You must be authenticated to create a repository")
        name, namespace = payload.get("name"), payload.get("organization") or user.name
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise _HttpError(400, f"Invalid repo type {repo_type!r}")
        if not isinstance(name, str) or not NAME_RE.match(name) or not NAME_RE.match(namespace):
            raise _HttpError(400, f"Invalid repo name {namespace}/{name}")
        if not user.can_write(namespace):
            raise _HttpError(
                403, f"You don't have the rights to create a {repo_type} under the namespace {namespace!r}"
            )
        repo_id = f"{namespace}/{name}"
        private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
        with self.hub._lock:
            existing = self.hub._repos.get(f"{repo_type}:{repo_id}")
            if existing is not None:
                raise _HttpError(409, "You already created this repo", url=self._repo_url(existing))
            repo = _Repo(repo_type, repo_id, private, _now())
            attributes = DEFAULT_GITATTRIBUTES.encode()
            entry = _File(self.hub._store_bytes(attributes), git_blob_sha1(attributes), len(attributes), False)
            initial = self.hub._new_commit(repo, None, "initial commit", "", user.name, {".gitattributes": entry})
            repo.branches["main"] = initial.oid
            self.hub._repos[repo.key] = repo
            self.hub._save_state()
        return _json({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    def _h_delete_repo(self, params, query, body, user) -> _Reply:
        payload = body.json()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or (user.name if user else '')}/{payload.get('name')}"
        with self.hub._lock:
            self.hub._writable(repo_type, repo_id, user)
            del self.hub._repos[f"{repo_type}:{repo_id}"]
            self.hub._save_state()
        return _json({})

    def _h_settings(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        payload = body.json()
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, user)
            if "visibility" in payload:
                repo.private = payload["visibility"] != "public"
            elif "private" in payload:
                repo.private = bool(payload["private"])
            self.hub._save_state()
        return _json({})

    def _h_validate_yaml(self, params, query, body, user) -> _Reply:
        payload = body.json()
        errors, warnings = validate_metadata(str(payload.get("content", "")), payload.get("repoType") or "model")
        return _json(
            {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]},
            400 if errors else 200,
        )

    def _h_whoami(self, params, query, body, user) -> _Reply:
        if user is None:
            raise _HttpError(401, "Invalid user token")
        role = "write" if user.write else "read"
        return _json(
            {
                "type": "user",
                "name": user.name,
                "fullname": user.name,
                "orgs": [{"type": "org", "name": org} for org in user.orgs if org != "*"],
                "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": role}},
            }
        )

    def _h_agent_harnesses(self, params, query, body, user) -> _Reply:
        return _json({"standardEnvVars": [], "harnesses": {}})  # the client's telemetry registry: empty

    def _h_repo_info(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        with self.hub._lock:
            repo = self.hub._readable(repo_type, repo_id, user)
            commit = repo.commits[self.hub._resolve(repo, params.get("rev", "main"))]
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.blob_id)
                if entry.lfs:
                    lfs = entry.tree_entry(path)["lfs"]
                    sibling["lfs"] = {"size": lfs["size"], "sha256": lfs["oid"], "pointerSize": lfs["pointerSize"]}
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.key.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        readme = commit.files.get("README.md")
        if readme is not None:
            metadata, _ = _front_matter(self.hub._object_path(readme.sha256).read_text(errors="replace"))
            if isinstance(metadata, dict):
                info["cardData"] = {k: v for k, v in metadata.items() if k != "model-index"}
                info["tags"] = list(metadata.get("tags") or [])
                for key in ("pipeline_tag", "library_name"):
                    if key in metadata:
                        info[key] = metadata[key]
        return _json(info)

    def _h_tree(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        with self.hub._lock:
            repo = self.hub._readable(repo_type, repo_id, user)
            commit = repo.commits[self.hub._resolve(repo, params["rev"])]
        prefix = params.get("path", "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries, folders = [], set()
        for path, entry in sorted(commit.files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            relative = path[len(prefix) + 1 :] if prefix else path
            if "/" in relative:
                parts = relative.split("/")
                for depth in range(1, len(parts) if recursive else 2):
                    folders.add("/".join(filter(None, [prefix, *parts[:depth]])))
                if not recursive:
                    continue
            entries.append(entry.tree_entry(path))
        if prefix and not entries and not folders:
            raise _HttpError(404, f"{prefix} does not exist on {params['rev']}", "EntryNotFound")
        folder_entries = [
            {"type": "directory", "oid": hashlib.sha1(f"{commit.oid}:{f}".encode()).hexdigest(), "size": 0, "path": f}
            for f in sorted(folders)
        ]
        return _json(folder_entries + entries)

    def _h_paths_info(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        form = parse_qs(body.read_all().decode())
        with self.hub._lock:
            repo = self.hub._readable(repo_type, repo_id, user)
            commit = repo.commits[self.hub._resolve(repo, params["rev"])]
        out = []
        for wanted in form.get("paths", []):
            wanted = wanted.strip("/")
            if wanted in commit.files:
                out.append(commit.files[wanted].tree_entry(wanted))
            elif any(p.startswith(wanted + "/") for p in commit.files):
                out.append(
                    {"type": "directory", "oid": hashlib.sha1(wanted.encode()).hexdigest(), "size": 0, "path": wanted}
                )
        return _json(out)

    def _h_refs(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        with self.hub._lock:
            repo = self.hub._readable(repo_type, repo_id, user)
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo.branches.items()]
            prs = [
                {"name": f"refs/pr/{i}", "ref": f"refs/pr/{i}", "targetCommit": oid}
                for i, oid in enumerate(repo.pull_requests, 1)
            ]
        return _json({"branches": branches, "tags": [], "converts": [], "pullRequests": prs})

    def _h_list_commits(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        with self.hub._lock:
            self.hub._readable(repo_type, repo_id, user)
            history = self.hub.commits(repo_id, params["rev"], repo_type)
            repo = self.hub._repo(repo_type, repo_id)
            out = [
                {
                    "id": item["oid"],
                    "title": item["title"],
                    "message": item["message"],
                    "authors": [{"user": repo.commits[item["oid"]].author}],
                    "date": repo.commits[item["oid"]].date,
                }
                for item in history
            ]
        return _json(out)

    def _h_create_branch(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        payload = body.json()
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, user)
            if params["branch"] in repo.branches:
                raise _HttpError(409, f"Branch {params['branch']} already exists")
            repo.branches[params["branch"]] = self.hub._resolve(repo, payload.get("startingPoint") or "main")
            self.hub._save_state()
        return _json({})

    def _h_delete_branch(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, user)
            if params["branch"] == "main" or repo.branches.pop(params["branch"], None) is None:
                raise _HttpError(404 if params["branch"] != "main" else 403, f"Cannot delete branch {params['branch']}")
            self.hub._save_state()
        return _json({})

    def _h_xet_token(self, params, query, body, user) -> _Reply:
        raise _HttpError(
            501,
            "The local hub does not implement Xet storage: run the client with HF_HUB_DISABLE_XET=1, or start the hub without --lfs",
        )

    # -------------------------------------------------------------- uploads and commits

    def _h_preupload(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        payload = body.json()
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, user)
            commit = repo.commits[self.hub._resolve(repo, params["rev"])]
        files = []
        for item in payload.get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            mode = self.hub._upload_mode(item["path"], int(item.get("size", 0)), sample)
            answer: dict[str, Any] = {"path": item["path"], "uploadMode": mode, "shouldIgnore": False}
            existing = commit.files.get(item["path"])
            if existing is not None:
                answer["oid"] = existing.sha256 if mode == "lfs" else existing.git_sha1
            files.append(answer)
        return _json({"files": files, "commitOid": commit.oid})

    def _h_commit(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        with self.hub._lock:
            self.hub._writable(repo_type, repo_id, user)
        header: dict[str, Any] | None = None
        additions: dict[str, _File] = {}
        deletions: list[tuple[str, bool]] = []
        for count, line in enumerate(body.lines()):
            if count > MAX_COMMIT_OPERATIONS:
                raise _HttpError(413, f"Too many operations in one commit (> {MAX_COMMIT_OPERATIONS})")
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
            except (ValueError, KeyError, TypeError) as err:
                raise _HttpError(400, f"Malformed commit payload line {count + 1}") from err
            if key == "header":
                header = value
            elif key == "file":
                try:
                    data = base64.b64decode(value["content"], validate=True)
                except (binascii.Error, KeyError) as err:
                    raise _HttpError(400, f"Invalid base64 content for {value.get('path')}") from err
                additions[_clean_path(value["path"])] = _File(
                    self.hub._store_bytes(data), git_blob_sha1(data), len(data), False
                )
            elif key == "lfsFile":
                sha256, size = str(value.get("oid", "")), value.get("size")
                stored = self.hub._object_path(sha256)
                if not re.fullmatch(r"[0-9a-f]{64}", sha256) or not stored.is_file():
                    raise _HttpError(422, f"LFS object {sha256} for {value.get('path')} was not uploaded")
                actual = stored.stat().st_size
                if size is not None and int(size) != actual:
                    raise _HttpError(422, f"LFS object {sha256} has size {actual}, not {size}")
                data_git_sha1 = git_blob_sha1(stored.read_bytes()) if actual <= LFS_THRESHOLD_BYTES else ""
                additions[_clean_path(value["path"])] = _File(sha256, data_git_sha1, actual, True)
            elif key in ("deletedFile", "deletedFolder"):
                deletions.append((_clean_path(value["path"]), key == "deletedFolder"))
            else:
                raise _HttpError(400, f"Unknown commit operation {key!r}")
        if not header or not str(header.get("summary", "")).strip():
            raise _HttpError(400, "Commit summary is required")
        if "README.md" in additions:
            readme = self.hub._object_path(additions["README.md"].sha256).read_text(errors="replace")
            errors, _ = validate_metadata(readme, repo_type)
            if errors:
                raise _HttpError(400, "Invalid metadata in README.md: " + "; ".join(errors))
        create_pr = query.get("create_pr", ["0"])[0] in ("1", "true", "True")
        return self._apply_commit(repo_type, repo_id, params["rev"], header, additions, deletions, create_pr, user)

    def _apply_commit(self, repo_type, repo_id, revision, header, additions, deletions, create_pr, user) -> _Reply:
        """The atomic step: everything was validated and stored; now move one ref under the lock."""
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, user)
            head = self.hub._resolve(repo, revision)
            is_branch = revision.removeprefix("refs/heads/") in repo.branches
            is_pr = re.fullmatch(r"refs/pr/\d+", revision) is not None
            if not (is_branch or is_pr):
                raise _HttpError(400, f"Cannot commit to {revision}: not a branch")
            parent = header.get("parentCommit")
            if parent and not create_pr and not head.startswith(parent):
                raise _HttpError(412, f"A commit has happened since {parent}. Please refresh and try again.")
            files = dict(repo.commits[head].files)
            for path, is_folder in deletions:
                if is_folder:
                    doomed = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                else:
                    doomed = [path] if path in files else []
                if not doomed:
                    raise _HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            files.update(additions)
            commit = self.hub._new_commit(
                repo, head, header["summary"], header.get("description", ""), user.name, files
            )
            reply: dict[str, Any] = {"success": True, "commitOid": commit.oid}
            if create_pr:
                repo.pull_requests.append(commit.oid)
                reply["pullRequestUrl"] = f"{self._repo_url(repo)}/discussions/{len(repo.pull_requests)}"
            elif is_pr:
                repo.pull_requests[int(revision.rsplit("/", 1)[1]) - 1] = commit.oid
            else:
                repo.branches[revision.removeprefix("refs/heads/")] = commit.oid
            self.hub._save_state()
        reply["commitUrl"] = f"{self._repo_url(repo)}/commit/{commit.oid}"
        return _json(reply)

    def _h_lfs_batch(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        payload = body.json()
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, user)
        if payload.get("operation") != "upload":
            raise _HttpError(400, "Only the upload operation is implemented")
        objects = []
        chunk = self.hub.multipart_chunk_size
        for item in payload.get("objects", []):
            oid, size = str(item.get("oid", "")), int(item.get("size", -1))
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or size < 0:
                objects.append(
                    {"oid": oid, "size": max(size, 0), "error": {"code": 422, "message": "invalid oid or size"}}
                )
                continue
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not self.hub._object_path(oid).is_file():
                sig = self.hub._sign(repo.key, oid, str(size))
                upload_url = f"{self._base_url()}/lfs-upload/{oid}?size={size}&sig={sig}"
                upload: dict[str, Any] = {"href": upload_url, "header": {}}
                if chunk and size > chunk:
                    parts = -(-size // chunk)
                    upload["href"] = f"{self._base_url()}/lfs-upload/{oid}/complete?size={size}&sig={sig}"
                    upload["header"] = {"chunk_size": str(chunk)}
                    upload["header"].update(
                        {
                            str(n): f"{self._base_url()}/lfs-upload/{oid}/part/{n}?size={size}&sig={sig}"
                            for n in range(1, parts + 1)
                        }
                    )
                verify = f"{self._base_url()}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}.git/info/lfs/objects/verify"
                answer["actions"] = {"upload": upload, "verify": {"href": verify, "header": {}}}
            objects.append(answer)
        return _json(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            **{"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _check_signature(self, oid: str, query: dict[str, list[str]]) -> int:
        size, sig = query.get("size", ["-1"])[0], query.get("sig", [""])[0]
        with self.hub._lock:
            keys = list(self.hub._repos)
        if not any(hmac.compare_digest(sig, self.hub._sign(key, oid, size)) for key in keys):
            raise _HttpError(403, "Invalid or expired upload signature")
        return int(size)

    def _h_lfs_put(self, params, query, body, user) -> _Reply:
        oid = params["oid"]
        size = self._check_signature(oid, query)
        part = params.get("part")
        name = f"{oid}.part{int(part):05d}" if part else f"{oid}.{secrets.token_hex(4)}"
        tmp = self.hub.root / "uploads" / name
        digest, written = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as handle:
                for data in body.chunks():
                    written += len(data)
                    if written > size:
                        raise _HttpError(400, f"Upload larger than announced ({size} bytes)")
                    digest.update(data)
                    handle.write(data)
            if part:
                return _Reply(200, b"", {"ETag": f'"{digest.hexdigest()}"'})
            if written != size or digest.hexdigest() != oid:
                raise _HttpError(400, f"Uploaded content does not match oid {oid} / size {size}")
            dest = self.hub._object_path(oid)
            dest.parent.mkdir(exist_ok=True)
            os.replace(tmp, dest)
            return _Reply(200)
        finally:
            if not part:
                tmp.unlink(missing_ok=True)

    def _h_lfs_complete(self, params, query, body, user) -> _Reply:
        oid = params["oid"]
        size = self._check_signature(oid, query)
        payload = body.json()
        parts = sorted(payload.get("parts", []), key=lambda p: p["partNumber"])
        sources = [self.hub.root / "uploads" / f"{oid}.part{p['partNumber']:05d}" for p in parts]
        missing = [str(p) for p in sources if not p.is_file()]
        if missing or payload.get("oid") != oid:
            raise _HttpError(400, f"Multipart upload of {oid} is incomplete")
        tmp = self.hub.root / "uploads" / f"{oid}.{secrets.token_hex(4)}"
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for source in sources:
                    with open(source, "rb") as handle:
                        while data := handle.read(CHUNK):
                            digest.update(data)
                            out.write(data)
            if tmp.stat().st_size != size or digest.hexdigest() != oid:
                raise _HttpError(400, f"Multipart content does not match oid {oid} / size {size}")
            dest = self.hub._object_path(oid)
            dest.parent.mkdir(exist_ok=True)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
            for source in sources:
                source.unlink(missing_ok=True)
        return _json({})

    def _h_lfs_verify(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        payload = body.json()
        with self.hub._lock:
            self.hub._writable(repo_type, repo_id, user)
        stored = self.hub._object_path(str(payload.get("oid", "")))
        if not stored.is_file() or stored.stat().st_size != payload.get("size"):
            raise _HttpError(404, f"LFS object {payload.get('oid')} not found")
        return _json({})

    # -------------------------------------------------------------- downloads

    def _h_resolve(self, params, query, body, user) -> _Reply:
        repo_type, repo_id = self._ids(params)
        with self.hub._lock:
            repo = self.hub._readable(repo_type, repo_id, user)
            commit = repo.commits[self.hub._resolve(repo, params["rev"])]
        entry = commit.files.get(params["path"])
        if entry is None:
            raise _HttpError(404, f"Entry not found: {params['path']}", "EntryNotFound")
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{entry.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        start, end = 0, entry.size - 1
        status = 200
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if ranged and entry.size and (ranged.group(1) or ranged.group(2)):
            if ranged.group(1):
                start = int(ranged.group(1))
                end = min(int(ranged.group(2)), end) if ranged.group(2) else end
            else:
                start = max(entry.size - int(ranged.group(2)), 0)
            if start > end:
                raise _HttpError(416, "Requested range not satisfiable")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        return _Reply(status, b"", headers, self.hub._object_path(entry.sha256), start, end - start + 1)


def _clean_path(path: Any) -> str:
    if (
        not isinstance(path, str)
        or not path
        or path.startswith("/")
        or any(p in ("..", ".git") for p in path.split("/"))
    ):
        raise _HttpError(400, f"Invalid path in repo: {path!r}")
    return path


# ----------------------------------------------------------------------------- offline demo


@dataclass
class HubArguments:
    root: str | None = field(default=None, metadata={"help": "Folder for repos (default: a temp dir, removed on exit)"})
    port: int = field(default=0, metadata={"help": "Port on 127.0.0.1 (default: a free one)"})
    lfs: bool = field(default=False, metadata={"help": "Answer `lfs` for weights (clients need HF_HUB_DISABLE_XET=1)"})
    token: str | None = field(default=None, metadata={"help": "Accept this token (default: a random one, printed)"})
    serve_seconds: float = field(default=0.0, metadata={"help": "Stop after this many seconds (0: until Ctrl-C)"})


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(HubArguments).parse_args_into_dataclasses(args=argv)
    users = {args.token: HubUser("local-user", orgs=("*",))} if args.token else None
    with HubServer(args.root, lfs=args.lfs, users=users, port=args.port) as hub:
        # The token below is this throwaway server's own credential, not a user secret.
        print(f"local hub serving repos from {hub.root}", flush=True)
        print(
            f"export HF_ENDPOINT={hub.endpoint} HF_TOKEN={hub.token}" + (" HF_HUB_DISABLE_XET=1" if args.lfs else ""),
            flush=True,
        )
        deadline = time.monotonic() + args.serve_seconds if args.serve_seconds > 0 else None
        with contextlib.suppress(KeyboardInterrupt):
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2 if deadline is None else min(0.2, max(deadline - time.monotonic(), 0)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

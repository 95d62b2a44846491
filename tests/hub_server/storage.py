"""The repos on disk: users, files, commits and branches; content-addressed objects; the state file; access control."""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .protocol import HttpError

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
LFS_THRESHOLD_BYTES = 10 * 1024 * 1024  # the Hub stores files above 10 MB in LFS
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")

# The Hub's default `.gitattributes`: paths matching these go to LFS (plus big or binary files).
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
    "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "*.tar.*", "*.tar", "*.tflite",
    "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)  # fmt: skip
DEFAULT_GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)


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


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub calls a regular file's `oid`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class StoredFile:
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
class Commit:
    oid: str
    parents: list[str]
    title: str
    message: str
    author: str
    date: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)
    pull_requests: list[str] = field(default_factory=list)  # refs/pr/N -> head commit (index N-1)
    commits: dict[str, Commit] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.repo_type}:{self.repo_id}"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class RepoStore:
    """What `HubServer` keeps: repos (`_repos`, persisted to `state.json` under `root`), stored objects,
    upload signatures and access checks. Callers hold `_lock` around anything that reads or moves a ref."""

    root: Path
    lfs: bool
    users: dict[str, HubUser]
    _lock: threading.RLock
    _secret: bytes
    _repos: dict[str, Repo]

    def _state_path(self) -> Path:
        return self.root / "state.json"

    def _load_state(self) -> None:
        if not self._state_path().is_file():
            return
        raw = json.loads(self._state_path().read_text())
        for item in raw["repos"]:
            commits = {
                oid: Commit(**{**c, "files": {p: StoredFile(**f) for p, f in c["files"].items()}})
                for oid, c in item.pop("commits").items()
            }
            repo = Repo(**item, commits=commits)
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

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self._repos.get(f"{repo_type}:{repo_id}")
        if repo is None:
            raise HttpError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _resolve(self, repo: Repo, revision: str) -> str:
        """Branch name, refs/heads/x, refs/pr/N or a commit oid -> commit oid."""
        name = revision.removeprefix("refs/heads/")
        if name in repo.branches:
            return repo.branches[name]
        pr = re.fullmatch(r"refs/pr/(\d+)", revision)
        if pr and 1 <= int(pr.group(1)) <= len(repo.pull_requests):
            return repo.pull_requests[int(pr.group(1)) - 1]
        if COMMIT_RE.match(revision) and revision in repo.commits:
            return revision
        raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _new_commit(
        self, repo: Repo, parent: str | None, title: str, message: str, author: str, files: dict[str, StoredFile]
    ) -> Commit:
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
        commit = Commit(
            hashlib.sha1(seed.encode()).hexdigest(),
            [parent] if parent else [],
            title,
            message,
            author,
            utc_now(),
            files,
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
            raise HttpError(401, "Invalid credentials in Authorization header")
        return user

    def _readable(self, repo_type: str, repo_id: str, user: HubUser | None) -> Repo:
        repo = self._repo(repo_type, repo_id)
        if repo.private and (user is None or not user.member_of(repo_id.split("/")[0])):
            if user is None:
                raise HttpError(401, "Repository not found", "RepoNotFound")
            raise HttpError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _writable(self, repo_type: str, repo_id: str, user: HubUser | None) -> Repo:
        repo = self._readable(repo_type, repo_id, user)
        if user is None:
            raise HttpError(401, "You must be authenticated to write to a repository")
        if not user.can_write(repo_id.split("/")[0]):
            raise HttpError(403, f"You don't have the rights to write to {repo_id}")
        return repo


# ----------------------------------------------------------------------------- request handling

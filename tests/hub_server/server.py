"""`HubServer`: the local hub's lifecycle (a thread serving on 127.0.0.1) and the helpers tests read it with."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .faults import Fault
from .lfs import UploadRoutes
from .routes import RepoRoutes
from .storage import HubUser, Repo, RepoStore

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class _Handler(RepoRoutes, UploadRoutes):
    """One request: the plumbing of `HandlerBase` plus every route."""


class HubServer(RepoStore):
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
        self._repos: dict[str, Repo] = {}
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

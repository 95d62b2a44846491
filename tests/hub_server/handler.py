"""The request handler's plumbing: the route table, dispatch (with fault injection), replies, and the preamble
every repo route shares (which repo, may this user read or write it, which commit)."""

from __future__ import annotations

import contextlib
import re
import socket
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from .faults import Fault, take_fault
from .protocol import CHUNK, Body, HttpError, Reply, error_reply
from .storage import REPO_TYPES, URL_PREFIX, Commit, HubUser, Repo

if TYPE_CHECKING:
    from .server import HubServer

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


class HandlerBase(BaseHTTPRequestHandler):
    """Dispatch and replies; the routes (`_h_<name>` methods named in `ROUTES`) live in `routes` and `lfs`."""

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
            self._send(error_reply(HttpError(503, "Server busy")))
            return
        try:
            body = Body(self.rfile, self.headers, self.hub.max_body_bytes)
        except HttpError as err:
            self.close_connection = True
            self._send(error_reply(err))
            self.hub._slots.release()
            return
        try:
            fault: Fault | None = take_fault(self.hub.faults, self.hub._lock, self.command, path)
            if fault is not None and fault.action == "stall":
                self.hub._stopping.wait()
            if fault is not None and fault.action in ("drop", "stall"):
                self._drop(body)
                return
            if fault is not None and fault.action == "status":
                body.drain()
                self._send(error_reply(HttpError(fault.status, f"Injected failure ({fault.status})")))
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

    def _route(self, path: str, query: dict[str, list[str]], body: Body) -> Reply:
        try:
            user = self.hub.user_for(self.headers.get("Authorization"))
            for method, pattern, name in ROUTES:
                match = pattern.match(path)
                if match and method == self.command:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    return getattr(self, f"_h_{name}")(params, query, body, user)
            self.hub.unhandled.append((self.command, path))
            raise HttpError(404, f"Not implemented by the local hub: {self.command} {path}")
        except HttpError as err:
            if err.status == 413:
                self.close_connection = True
            return error_reply(err)

    def _drop(self, body: Body) -> None:
        """Close the connection without a reply, after reading part of the body (a network cut)."""
        with contextlib.suppress(Exception):
            for seen, _ in enumerate(body.chunks(64 * 1024)):
                if seen >= 1:
                    break
        self.hub.requests.append((self.command, urlsplit(self.path).path, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, reply: Reply) -> None:
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

    def _repo_url(self, repo: Repo) -> str:
        return f"{self._base_url()}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    @staticmethod
    def _ids(params: dict[str, str]) -> tuple[str, str]:
        return REPO_TYPES.get(params.get("kind") or "models", "model"), f"{params['ns']}/{params['name']}"

    def _open(self, params: dict[str, str], user: HubUser | None, *, write: bool = False) -> Repo:
        """The repo a route names, once `user` may read it (or write it, with `write`); 401/403/404 otherwise."""
        repo_type, repo_id = self._ids(params)
        with self.hub._lock:
            return (self.hub._writable if write else self.hub._readable)(repo_type, repo_id, user)

    def _open_at(self, params: dict[str, str], user: HubUser | None, *, write: bool = False) -> tuple[Repo, Commit]:
        """`_open`, plus the commit that the route's revision (`rev`, default main) resolves to."""
        repo_type, repo_id = self._ids(params)
        with self.hub._lock:
            repo = (self.hub._writable if write else self.hub._readable)(repo_type, repo_id, user)
            return repo, repo.commits[self.hub._resolve(repo, params.get("rev", "main"))]

    # -------------------------------------------------------------- repos

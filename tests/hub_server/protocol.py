"""HTTP plumbing of the local hub: the error a handler raises, the reply it returns, and the bounded request body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK = 1024 * 1024


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # streamed from disk instead of `body`
    offset: int = 0
    length: int = 0


def json_reply(payload: Any, status: int = 200, **headers: str) -> Reply:
    return Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})


def error_reply(err: HttpError) -> Reply:
    headers = {"X-Error-Message": " ".join(err.message.split())[:500]}
    if err.code:
        headers["X-Error-Code"] = err.code
    return json_reply({"error": err.message, **err.extra}, err.status, **headers)


class Body:
    """The request body, read lazily and bounded: Content-Length or chunked transfer encoding."""

    def __init__(self, rfile: Any, headers: Any, limit: int) -> None:
        self.rfile = rfile
        self.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self.remaining = 0 if self.chunked else int(headers.get("Content-Length") or 0)
        if self.remaining > limit:
            raise HttpError(413, f"Request body too large ({self.remaining} > {limit} bytes)")
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
                raise HttpError(413, f"Request body too large (> {self.limit} bytes)")
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
            raise HttpError(400, f"Invalid JSON body: {err}") from err

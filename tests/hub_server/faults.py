"""Fault injection: requests the server fails on purpose (dropped, unanswered, an error status, held)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass


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


def take_fault(faults: list[Fault], lock: threading.RLock, method: str, path: str) -> Fault | None:
    """The first armed fault matching this request, counted as hit; None when the request goes through."""
    with lock:
        for fault in faults:
            if fault.matches(method, path):
                fault.hits += 1
                return fault
    return None

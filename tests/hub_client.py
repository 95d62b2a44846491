"""Talking to the local Hub server from tests: the environment of a client subprocess, and raw HTTP calls."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from hub_server import HubServer


def client_env(
    cli_env: dict[str, str], hub: HubServer, home, *, xet: bool = True, token: str | None = None
) -> dict[str, str]:
    """Environment for a client subprocess talking to `hub` (fresh HF_HOME, offline switches removed)."""
    env = {
        k: v
        for k, v in cli_env.items()
        if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")
    }
    env.update(
        HF_ENDPOINT=hub.endpoint, HF_HOME=str(home), HF_TOKEN=token or hub.token, HF_HUB_DISABLE_PROGRESS_BARS="1"
    )
    if xet:
        env.pop("HF_HUB_DISABLE_XET", None)
    else:
        env["HF_HUB_DISABLE_XET"] = "1"
    return env


def call(hub: HubServer, method: str, path: str, payload=None, *, token: str | None = None, data: bytes | None = None):
    """A raw HTTP call: (status, headers, body bytes)."""
    body = data if data is not None else (json.dumps(payload).encode() if payload is not None else None)
    request = urllib.request.Request(hub.endpoint + path, data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()

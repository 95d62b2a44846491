"""Test helpers that are useful outside the test-suite too.

`hf_soup.testing.hub.HubServer` is a small Hub-compatible HTTP server on 127.0.0.1: point
`HF_ENDPOINT` at it and the unmodified `huggingface_hub` / `transformers` clients create repos,
push, and download from it. `python -m hf_soup.testing.hub` runs it as an offline demo.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Fault", "HubServer", "HubUser"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m hf_soup.testing.hub` does not import the module twice.
    if name in __all__:
        from hf_soup.testing import hub

        return getattr(hub, name)
    raise AttributeError(name)

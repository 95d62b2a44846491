"""Test helpers that are useful outside the test-suite too.

`hf_soup.testing.hub.HubServer` is a small Hub-compatible HTTP server on 127.0.0.1: point
`HF_ENDPOINT` at it and the unmodified `huggingface_hub` / `transformers` clients create repos,
push, and download from it. `python -m hf_soup.testing.hub` runs it as an offline demo.
"""

from hf_soup.testing.hub import Fault, HubServer, HubUser

__all__ = ["Fault", "HubServer", "HubUser"]

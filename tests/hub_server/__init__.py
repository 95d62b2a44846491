"""A small Hub-compatible HTTP server on 127.0.0.1, for tests and offline demos of publishing.

Why: the real Hub is not reachable from CI, and no installable self-hosted Hub accepts uploads.
This server implements the part of the Hub API that the *unmodified* `huggingface_hub` 2.x client
and `transformers` use to create a repo, push (regular uploads, and the git-LFS batch API used
with `HF_HUB_DISABLE_XET=1`), read repo info and file trees, and download (`hf_hub_download`,
`snapshot_download`, `from_pretrained`). Repos live in a folder (a temp dir by default); a commit
is applied to a branch in one step under a lock, so it lands whole or not at all. It is a test
fixture and a demo prop, so it lives beside the tests and is not part of the installed package.

    python -m tests.hub_server                       # from the checkout's root: prints HF_ENDPOINT / HF_TOKEN
    python -m tests.hub_server --lfs --root /tmp/hub --port 8123

    from hub_server import HubServer                 # in tests (tests/ is on sys.path)
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

Modules: `storage` (repos, objects, state, access), `protocol` (errors, replies, the request body),
`handler` (route table, dispatch, the shared preamble), `routes` (repos and downloads), `lfs`
(commits and LFS uploads), `faults` (fault injection), `metadata` (card YAML checks), `server`.
"""

from .faults import Fault
from .metadata import validate_metadata
from .server import HubServer
from .storage import HubUser

__all__ = ["Fault", "HubServer", "HubUser", "validate_metadata"]

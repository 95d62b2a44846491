"""`python -m tests.hub_server` (from the checkout's root): serve repos until Ctrl-C, as an offline demo."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from .server import HubServer
from .storage import HubUser


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

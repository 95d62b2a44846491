"""Keep secrets out of what hf_soup records: commands written to ingredient.json, array.json, logs.

Why one function: the sweep, the launcher and the shard logs all record the command a user typed,
and a `--hub_token hf_...` in any of them would leak on the Hub with the first push. Only flags
named `--token` or `--*_token` (dashes or underscores) carry tokens; `--tokenizer_name` does not,
and masking it would make the recorded command unrunnable.
"""

from __future__ import annotations

MASK = "***"


def is_secret_flag(arg: str) -> bool:
    """`--token`, `--hub_token`, `--hub-token=...`: a flag whose value is a credential."""
    if not arg.startswith("--"):
        return False
    name = arg[2:].split("=", 1)[0].replace("-", "_").lower()
    return name == "token" or name.endswith("_token")


def mask_secret_flags(argv: list[str]) -> list[str]:
    """`argv` with the values of token flags replaced by `***`: for logs and records, never for running."""
    out = list(argv)
    for i, arg in enumerate(out):
        if is_secret_flag(arg):
            if "=" in arg:
                out[i] = arg.split("=", 1)[0] + "=" + MASK
            elif i + 1 < len(out) and not out[i + 1].startswith("--"):
                out[i + 1] = MASK
    return out

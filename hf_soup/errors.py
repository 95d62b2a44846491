"""The one exception type for user mistakes, and the wrapper that turns it into one line + exit 2.

Why: the brief promises "a clear one-line error naming the file/field and a non-zero exit, never
a traceback for user mistakes". Library code raises `SoupError`; every CLI entry point runs
through `cli_main`, which prints `error: <message>` to stderr and exits with status 2 (argparse's
own convention for bad usage). Programming errors still raise normally, with a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class SoupError(Exception):
    """A user-facing error: bad input, bad files, a refused operation. Message is one line."""

    exit_code = 2


def cli_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a CLI `main(argv)`; map SoupError (and Ctrl-C) to one stderr line and a non-zero code."""
    try:
        return int(main(argv) or 0)
    except SoupError as err:
        message = " ".join(str(err).split())  # guarantee a single line
        print(f"error: {message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def causes(err: BaseException, limit: int = 10) -> list[BaseException]:
    """`err` and the exceptions it was raised from or during (__cause__ / __context__), nearest first:
    Hub client errors wrap the HTTP or connection error that says what really happened."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    while err is not None and id(err) not in seen and len(chain) < limit:
        chain.append(err)
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return chain


def http_status(err: BaseException) -> int | None:
    """The HTTP status of the nearest response among `causes(err)` (None: no response, e.g. offline)."""
    for cause in causes(err):
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
    return None


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: X)" suffix, except where the help text already says what the default is
    (HfArgumentParser's default formatter would print "(default: inferred) (default: None)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "default" in text.lower() else super()._get_help_string(action)

"""Write a whole output folder or file so that it appears complete or not at all.

Why: a sweep, merge or publish can be killed at any moment (SIGKILL, full disk, Ctrl-C). Every
stage writes into a hidden temporary sibling of the destination and renames it into place as
its last step, so a reader (the next stage, a rerun, a user) never sees half-written weights.
The temporary name starts with `.tmp-` so finders skip it and a rerun can clear leftovers.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hf_soup.errors import SoupError
from hf_soup.redact import redact

TMP_PREFIX = ".tmp-"
LOCK_SUFFIX = ".lock"


def _describe_os_error(err: OSError, path: Path) -> str:
    if err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"{path}: no space left to write it ({err.strerror})"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path}: not writable ({err.strerror})"
    return f"{path}: {err.strerror or err}"


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `dest`; on success rename it to `dest`.

    On any exception the temporary folder is removed and `dest` is untouched. With
    `overwrite=False` an existing `dest` is an error (checked before and again at rename time, so
    of two concurrent writers one wins and the other refuses).
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise SoupError(f"{dest}: already exists (refusing to overwrite)")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Not mkdtemp: its 0700 mode would survive the rename; mkdir applies the user's umask.
        tmp = dest.parent / f"{TMP_PREFIX}{dest.name}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
    except OSError as err:
        raise SoupError(_describe_os_error(err, dest.parent)) from err
    try:
        yield tmp
        respect_umask(tmp)
        _rename_into_place(tmp, dest, overwrite)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        os_error = _as_os_error(err)
        if os_error is not None:
            raise SoupError(_describe_os_error(os_error, dest)) from err
        raise


def current_umask() -> int:
    """The process's umask, read without changing it where the OS says it (Linux), else set and reset."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def respect_umask(folder: Path) -> None:
    """Give the weight files in `folder` the mode the user's umask asks for (0644 under 022).

    safetensors writes its file through a private temporary file, so `model.safetensors` comes out
    0600 while config and tokenizer files are 0644: on a shared machine nobody else could read an
    ingredient or a soup. Only `*.safetensors` are changed; nothing else hf_soup writes is 0600.
    """
    mode = 0o666 & ~current_umask()
    for path in folder.rglob("*.safetensors"):
        if path.is_file() and not path.is_symlink() and (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)


def _as_os_error(err: BaseException) -> OSError | None:
    """The OSError behind `err`: itself, or one that safetensors' Rust writer reported as text
    ("I/O error: No space left on device (os error 28)"), so a full disk reads the same either way."""
    if isinstance(err, OSError):
        return err
    match = re.search(r"\(os error (\d+)\)", str(err))
    if match and type(err).__name__ == "SafetensorError":
        code = int(match.group(1))
        return OSError(code, os.strerror(code))
    return None


def _rename_into_place(tmp: Path, dest: Path, overwrite: bool) -> None:
    if overwrite and dest.exists():
        old = dest.with_name(f"{TMP_PREFIX}{dest.name}-old-{os.getpid()}")
        os.rename(dest, old)
        os.rename(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        # rename() onto an existing non-empty directory fails, which is what makes the race safe.
        os.rename(tmp, dest)
    except OSError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise SoupError(f"{dest}: another process wrote it first (refusing to overwrite)") from err
        raise


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON to `path` via a temporary file + rename (readers never see a partial file).

    Every record hf_soup writes passes here, so every one is redacted (hf_soup.redact): a secret
    in a recorded command or argument never reaches a file that may be published."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=str)
    write_text_atomic(path, json.dumps(redact(json.loads(text)), indent=2, sort_keys=False) + "\n")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` via a temporary file + rename (readers never see a partial file)."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise SoupError(_describe_os_error(err, path)) from err


def clear_temporaries_of(dest: str | os.PathLike) -> list[Path]:
    """Remove what killed writers of `dest` left beside it (`.tmp-<name>-<pid>-…`).

    Call it holding `dest`'s lock: every writer of `dest` holds it, so none of these is in use. The
    name must match exactly, so the temporaries of a sibling output such as `<name>-2` are left alone.
    """
    dest = Path(dest)
    pattern = re.compile(rf"{re.escape(TMP_PREFIX + dest.name)}-(?:old-)?\d+(?:-[0-9a-f]+)?")
    removed = []
    for child in dest.parent.glob(f"{TMP_PREFIX}*") if dest.parent.is_dir() else ():
        if pattern.fullmatch(child.name):
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
            removed.append(child)
    return removed


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, *, wait: bool = False, tidy: bool = False) -> Iterator[None]:
    """Hold an advisory lock `<target>.lock` so two writers of the same output cannot both run.

    Uses `fcntl.flock` (released by the kernel when a process dies, so SIGKILL leaves no stale
    lock). The second writer is refused with a clear error rather than made to wait, unless
    `wait=True` (for short critical sections, e.g. two launchers deciding what to submit).
    `tidy=True`: a failure that left no `target` removes the lock file too (for writers that are
    refused, never kept waiting: one that opened the removed file is refused again at the rename).
    """
    import fcntl

    target = Path(target)
    lock_path = target.with_name(target.name + LOCK_SUFFIX)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")  # noqa: SIM115 - held for the duration of the context
    except OSError as err:  # a read-only or full output folder: say so before any work
        raise SoupError(_describe_os_error(err, target.parent)) from err
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise SoupError(f"{target}: another process is writing it right now ({lock_path})") from err
        try:
            yield
        except BaseException:
            if tidy and not target.exists():  # a refused input leaves nothing behind, not even the lock file
                lock_path.unlink(missing_ok=True)
            raise
    finally:
        handle.close()

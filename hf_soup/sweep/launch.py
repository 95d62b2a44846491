"""Where this process stands in a launch, and how processes and jobs agree on who does what.

Why a module of its own: planning, the shared start and the run loop all need the same three
facts (is this a multi-process launch, which rank is the main one, who holds a lock), and none of
them should import another just for that.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hf_soup.atomic import exclusive_lock
from hf_soup.errors import SoupError


def configure_cpu_launch() -> bool:
    """In a multi-process launch without CUDA (`torchrun --nproc_per_node N` on CPUs), tell the
    Trainer to form a CPU (gloo) process group. Call it before any TrainingArguments is built: each
    one sets up its device from `ACCELERATE_USE_CPU`. Returns whether this is such a launch."""
    import torch

    cpu_launch = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if cpu_launch:
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    return cpu_launch


def process_state():
    """This process's place in a multi-process launch (`torchrun`, `accelerate launch`), CUDA or not.

    Why: without CUDA, Accelerate forms a process group only when asked for the CPU; without it, N
    CPU processes would each run the whole sweep instead of training every point data-parallel.
    """
    from accelerate import PartialState

    return PartialState(cpu=True) if configure_cpu_launch() else PartialState()


def try_lock(stack: contextlib.ExitStack, target: Path) -> bool:
    """Take `<target>.lock` for the life of `stack`; False when another process holds it."""
    try:
        stack.enter_context(exclusive_lock(target))
    except SoupError:
        return False
    return True


def agree(state: Any, decide: Callable[[], bool]) -> bool:
    """The main process decides (e.g. takes a lock); every rank follows, so all train or none does."""
    decision = [decide() if state.is_main_process else None]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(decision)
    return bool(decision[0])

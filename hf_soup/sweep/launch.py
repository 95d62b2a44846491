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


def share_decision(state: Any, decide: Callable[[], Any]) -> Any:
    """The main process decides (e.g. takes a lock); every rank gets its answer (a collective call)."""
    decision = [decide() if state.is_main_process else None]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(decision)
    return decision[0]


def agree(state: Any, decide: Callable[[], bool]) -> bool:
    """`share_decision` for yes/no questions, so all ranks train or none does."""
    return bool(share_decision(state, decide))


# Accelerate's announcements of a sharded launch (`accelerate launch --use_fsdp / --use_deepspeed`).
SHARDED_LAUNCH_VARIABLES = ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED")
SHARDED_TRAINING_HELP = (
    "FSDP and DeepSpeed are not supported: the sweep scores and saves each ingredient from the main "
    "process's full copy of the weights, which sharded training does not have; train each point "
    "data-parallel instead (accelerate launch --num_processes N -m hf_soup.sweep ...)"
)


def refuse_sharded_launch(argv: list[str] | None = None) -> None:
    """Refuse, before anything is parsed or written, a launch that shards the model (FSDP, DeepSpeed).

    Checked from accelerate's environment and from the flags (`--deepspeed` cannot even be parsed
    without the deepspeed package); `planning.check_point` checks the parsed settings again, which
    catches the same keys given in a config file or as a grid axis.
    """
    import sys

    for name in SHARDED_LAUNCH_VARIABLES:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "y", "on"):
            raise SoupError(f"{name}: {SHARDED_TRAINING_HELP}")
    for arg in sys.argv[1:] if argv is None else argv:
        flag = arg.split("=", 1)[0].replace("-", "_")
        if flag in ("__fsdp", "__deepspeed"):
            raise SoupError(f"{flag[2:]}: {SHARDED_TRAINING_HELP}")

"""Quiet sub-second library steps: no progress bar or load report where there is nothing to watch.

Why: loading or writing one model's weights, tokenising a few thousand rows or caching them to
disk takes well under a second, yet `transformers` and `datasets` draw a progress bar for each
("Loading weights", "Writing model shards", "tokenizing", "Saving the dataset"), and nested under
the grid's own bar they leave cursor-movement codes in log files. transformers also logs a
LOAD REPORT listing the newly initialised classifier head, which a fine-tune expects (hf_soup
checks the head itself). The bars that measure real work (the grid, training, scoring) are
drawn by other code and stay.

Only the libraries' own switches are used (`transformers.utils.logging`,
`datasets.utils.logging`); each is restored on exit, so a caller that wants the bars keeps them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers without its progress bars and with warnings only at error level (the LOAD REPORT)."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hub_bars = not hub_utils.are_progress_bars_disabled()  # transformers' switch flips the Hub's too
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if hub_bars != (not hub_utils.are_progress_bars_disabled()):
            (hub_utils.enable_progress_bars if hub_bars else hub_utils.disable_progress_bars)()


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """datasets without its progress bars (map, save_to_disk, split generation)."""
    from datasets.utils import logging as datasets_logging

    bars = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            datasets_logging.enable_progress_bar()

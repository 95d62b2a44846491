"""Console scripts (pyproject `[project.scripts]`): what a pip user types instead of `python -m ...`.

    hf-soup-sweep --config rte                      # = python -m hf_soup.sweep
    hf-soup-merge --ingredients runs/rte --recipe greedy --output soups/rte-greedy
    hf-soup-publish soups/rte-greedy --repo_id you/rte-soup
    hf-soup-card soups/rte-greedy                   # (re)write only the model card

Each imports its stage only when called (a merge does not import the sweep) and runs it through
`cli_main`: bad input is one `error:` line and exit status 2, as with `python -m`.
"""

from __future__ import annotations

import importlib
import sys

from hf_soup.errors import cli_main


def _run(module: str) -> None:
    sys.exit(cli_main(importlib.import_module(module).main))


def sweep() -> None:
    _run("hf_soup.sweep.cli")


def merge() -> None:
    _run("hf_soup.merge.cli")


def publish() -> None:
    _run("hf_soup.publish")


def card() -> None:
    _run("hf_soup.card.cli")

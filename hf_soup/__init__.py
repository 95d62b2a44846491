"""hf_soup: model soups (uniform, greedy, learned, checkpoint averaging) for the Hugging Face workflow.

Stages, each a module with a CLI: `python -m hf_soup.sweep` (fine-tune a grid), `python -m hf_soup.merge`
(average the ingredients), `python -m hf_soup.publish` (push with a model card). See README.md.
From Python: `hf_soup.merge_soup(ingredients, recipe, output_dir=...) -> SoupResult`.
"""

from __future__ import annotations

from hf_soup.lazy import lazy_exports

__version__ = "0.1.0"
# The Python merge API, loaded on first use: `import hf_soup` stays cheap (no torch, no transformers).
__getattr__, _exported = lazy_exports(__name__, {"merge.api": ("SoupResult", "merge_soup")})
__all__ = ["__version__", *_exported]

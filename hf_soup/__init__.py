"""hf_soup: model soups (uniform, greedy, learned, checkpoint averaging) for the Hugging Face workflow.

Stages, each a module with a CLI: `python -m hf_soup.sweep` (fine-tune a grid), `python -m hf_soup.merge`
(average the ingredients), `python -m hf_soup.publish` (push with a model card). See README.md.
"""

__version__ = "0.1.0"

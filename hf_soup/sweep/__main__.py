"""`python -m hf_soup.sweep` (also `accelerate launch -m hf_soup.sweep`, `torchrun -m hf_soup.sweep`)."""

from hf_soup.sweep.cli import run

if __name__ == "__main__":
    run()

"""`python -m hf_soup.merge`."""

from hf_soup.merge.cli import run

if __name__ == "__main__":
    run()

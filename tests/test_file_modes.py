"""Weight files get the mode the user's umask asks for, like every other file of a folder."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from hf_soup.atomic import atomic_dir, current_umask


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_safetensors_in_an_atomic_folder_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        with atomic_dir(tmp_path / "model") as folder:
            save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
            (folder / "config.json").write_text("{}")
            assert (os.stat(folder / "model.safetensors").st_mode & 0o777) == 0o600  # what safetensors does
    finally:
        os.umask(old)
    weights, config = tmp_path / "model" / "model.safetensors", tmp_path / "model" / "config.json"
    assert (weights.stat().st_mode & 0o777) == (config.stat().st_mode & 0o777) == 0o666 & ~umask

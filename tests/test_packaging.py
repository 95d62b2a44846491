"""What a pip user gets: the wheel holds the sweep module, the bundled configs and the console scripts,
and not the local Hub server that the tests and the demo use.

Builds the wheel from a copy of the package (so the checkout gets no build/ or egg-info), installs it
with --no-deps into a throwaway --target, and runs it from outside the checkout with `python -S`:
no site-packages processing, so the editable install of the checkout cannot be picked up, and
PYTHONPATH = that target + the venv's site-packages (for torch, transformers, ...) only.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from hf_soup.sweep.arguments import bundled_configs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPTS = {"hf-soup-sweep", "hf-soup-merge", "hf-soup-publish", "hf-soup-card"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the --target folder, an environment that sees only it plus the dependencies, the wheel)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    # tests/ too, so that the package `find` in pyproject.toml is what keeps the test server out of the wheel
    for folder in ("hf_soup", "tests"):
        shutil.copytree(PROJECT_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (root / "dist").glob("hf_soup-*.whl")
    target = root / "target"
    install = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])
    return target, env, wheel


def test_python_m_hf_soup_sweep_help_runs_from_the_installed_wheel(installed, tmp_path):
    _, env, _ = installed
    result = subprocess.run([sys.executable, "-S", "-m", "hf_soup.sweep", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: python -m hf_soup.sweep") and "  --config " in result.stdout
    assert "--help-all" in result.stdout  # the short usage; every TrainingArguments flag is one flag away


def test_bundled_configs_and_console_scripts_are_in_the_wheel(installed, tmp_path):
    target, env, _ = installed
    probe = (
        "import hf_soup, hf_soup.console as c, hf_soup.sweep.arguments as g; print(hf_soup.__file__); "
        "print(g.resolve_config('rte')); print(g.resolve_config('bundled:sst2.yaml')); "
        "print(all(callable(getattr(c, n)) for n in ('sweep', 'merge', 'publish', 'card')))"
    )
    result = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    package = target / "hf_soup"
    assert result.stdout.split() == [
        str(package / "__init__.py"), str(package / "configs" / "rte.yaml"), str(package / "configs" / "sst2.yaml"),
        "True",
    ]  # fmt: skip
    assert sorted(p.stem for p in (package / "configs").glob("*.yaml")) == bundled_configs()
    entry_points = configparser.ConfigParser()
    (dist_info,) = target.glob("hf_soup-*.dist-info")
    entry_points.read(dist_info / "entry_points.txt")
    assert set(entry_points["console_scripts"]) == CONSOLE_SCRIPTS
    assert all((target / "bin" / name).is_file() for name in CONSOLE_SCRIPTS)


def test_the_wheel_holds_no_test_hub_server(installed):
    target, _, wheel = installed
    assert (PROJECT_ROOT / "tests" / "hub_server" / "server.py").is_file()  # it exists, beside the tests
    names = zipfile.ZipFile(wheel).namelist()
    assert "hf_soup/__init__.py" in names and "hf_soup/sweep/__main__.py" in names
    leaked = [n for n in names if n.startswith("tests/") or "hub_server" in n or n.startswith("hf_soup/testing")]
    assert leaked == []
    assert not (target / "tests").exists() and not (target / "hf_soup" / "testing").exists()


def test_the_card_package_and_its_template_are_in_the_wheel(installed, tmp_path):
    target, env, _ = installed
    result = subprocess.run([sys.executable, "-S", "-m", "hf_soup.card", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: python -m hf_soup.card") and "--repo_id" in result.stdout
    probe = "import hf_soup.card as c; print(c.DEFAULT_TEMPLATE, c.DEFAULT_TEMPLATE.is_file())"
    result = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [str(target / "hf_soup" / "templates" / "soup_card.md"), "True"]

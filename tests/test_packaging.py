"""cmet as a package: the dependency lists agree, and a non-editable install runs from any directory.

The install test builds the checkout's package (only ``cmet/``, ``pyproject.toml`` and ``README.md`` are copied,
so anything the package reads from elsewhere in the checkout fails it) into a fresh virtual environment that sees
this environment's dependencies through a ``.pth`` file, then runs the ``cmet`` command from another folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.media_factory import FFMPEG

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "assets" / "examples" / "hopper_talking.mp4"


def _requirements(lines: list[str]) -> dict[str, str]:
    """Package name → its version specifier, from requirement strings (comments and ``-r`` lines skipped)."""
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            found[requirement.name.lower().replace("_", "-")] = str(requirement.specifier)
    return found


def test_requirements_txt_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    listed = _requirements((REPO / "requirements.txt").read_text().splitlines())
    assert listed == _requirements(project["dependencies"])


def test_version_is_the_package_version():
    import cmet

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cmet.__version__"}
    assert cmet.__version__.count(".") == 2


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the package installed from a copy of its sources (not editable); its bin folder."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    shutil.copytree(REPO / "cmet", source / "cmet", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True
    ).stdout.strip()
    parents = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    (Path(site) / "parent_env.pth").write_text("".join(f"{path}\n" for path in parents))
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index"]
    done = subprocess.run([*pip, "--no-build-isolation", str(source)], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    shutil.rmtree(source)  # nothing may be read from the copy it was built from
    return env_dir / "bin"


def _isolated_env(scratch: Path) -> dict[str, str]:
    """No path back to the checkout, caches and weights in ``scratch`` only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMET_", "HF_", "MODELSCOPE_", "PYTHON"))}
    env.update(CMET_CACHE=str(scratch / "cache"), HF_HOME=str(scratch / "hf"), HF_HUB_OFFLINE="1")
    env["MODELSCOPE_CACHE"] = str(scratch / "ms")
    return env


@pytest.mark.slow  # builds a wheel and runs one edit of a 5 s clip
def test_installed_command_edits_from_another_directory(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _isolated_env(tmp_path)
    where = subprocess.run(
        [installed / "python", "-c", "import cmet; print(cmet.__file__)"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout + where.stderr
    helped = subprocess.run([installed / "cmet", "--help"], capture_output=True, text=True, cwd=elsewhere, env=env)
    assert helped.returncode == 0 and "edit" in helped.stdout, helped.stderr
    shutil.copy2(EXAMPLE, elsewhere / EXAMPLE.name)
    command = [installed / "cmet", "edit", EXAMPLE.name, "--target", "preset:happy", "-o", "out.mp4"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "engine: lite" in done.stderr and "wrote out.mp4" in done.stdout
    probe = subprocess.run([FFMPEG, "-i", str(elsewhere / "out.mp4")], capture_output=True, text=True)
    assert "Video: h264" in probe.stderr and "Audio: aac" in probe.stderr

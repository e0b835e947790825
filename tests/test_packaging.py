"""The wheel carries what the code opens beside itself, and declares what it imports."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_the_page_the_serve_config_and_the_search_spaces(tmp_path):
    # the same build a user's `pip install .` or `pip wheel .` runs (no network: setuptools is in the venv)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("musicgan-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    spaces = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tuning" / "spaces").glob("*.yaml"))
    assert spaces, "no search spaces in the checkout"
    for path in ["serving/page.html", "serving/config.yaml", *spaces]:
        assert path in names, f"{path} is missing from {wheel.name}"


def test_every_third_party_import_of_the_package_is_declared():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower().replace("-", "_") for d in deps}
    source = "\n".join(p.read_text() for d in ("musicgan", "serving", "tuning") for p in (ROOT / d).rglob("*.py"))
    # a module imported at the top of a line, by the package name pip knows it as
    for module, package in {"numba": "numba", "pyarrow": "pyarrow", "symusic": "symusic", "librosa": "librosa",
                            "soundfile": "soundfile", "yaml": "pyyaml", "tqdm": "tqdm", "psutil": "psutil",
                            "pretty_midi": "pretty_midi", "music21": "music21", "matplotlib": "matplotlib"}.items():
        if f"import {module}" in source or f"from {module}" in source:
            assert package in declared, f"{module} is imported but {package} is not a declared dependency"

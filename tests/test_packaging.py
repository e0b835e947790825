"""The wheel carries what the code opens beside itself, and declares what it imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

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


@pytest.mark.ray
def test_the_wheel_installed_without_the_source_tree_runs(ray_instance, tmp_path):
    """pip-install the wheel into a fresh venv (the dependencies come from this venv through a .pth
    line, since this machine has no index), then, from a folder without the checkout: --version, the
    page and the default search space from the installed package, and a small data build."""
    wheels = tmp_path / "wheels"
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = wheels.glob("musicgan-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies, but not this venv's editable musicgan: only site-packages itself, no .pth files
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, inst.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MUSICGAN_DEBUG")}
    env["MUSICGAN_RAY_ADDRESS"] = ray_instance.get_runtime_context().gcs_address  # one Ray per test session

    def run(*args):
        return subprocess.run(list(args), capture_output=True, text=True, timeout=600, cwd=work, env=env)

    version = run(str(venv / "bin" / "musicgan"), "--version")
    assert version.returncode == 0 and "0.1.0" in version.stdout + version.stderr, version
    where = run(str(py), "-c", "import musicgan, serving.app as a, tuning.search as s, pathlib;"
                "from tuning.space import load_space;"
                "print(musicgan.__file__, len(a.PAGE.read_text()),"
                " len(load_space(pathlib.Path(s.__file__).parent / 'spaces' / 'default.yaml')))")
    assert where.returncode == 0, where.stderr[-2000:]
    file, page_chars, params = where.stdout.split()
    assert file.startswith(str(venv)) and not file.startswith(str(ROOT)), file
    assert int(page_chars) > 1000 and int(params) >= 3
    build = run(str(venv / "bin" / "musicgan"), "data", "build", "--source", "bach", "--limit", "5",
                "--out", str(work / "bach"), "--quiet")
    assert build.returncode == 0, build.stderr[-3000:]
    manifest = json.loads((work / "bach" / "manifest.json").read_text())
    assert manifest["source"] == "bach" and manifest["counts"]["examples"] > 0

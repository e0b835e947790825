"""The family registry (musicgan.families), and a grep that keeps the rest of the code from
branching on a family's name."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("musicgan", "serving", "tuning")
# Not scanned: the families themselves, and the data layer, where "pianoroll" and "mel" name the
# feature kind a build writes (how its bytes are encoded), which it owns and which no family reads.
SKIPPED = ("musicgan/families/", "musicgan/data/")
# Feature kinds are FeatureConfig's own values in config.py; anywhere else a kind branch is a family branch.
KIND_OWNERS = ("musicgan/config.py",)
# Files that still branch and are fixed elsewhere; test_pending_files_still_branch keeps this list honest.
PENDING: tuple[str, ...] = ()


def family_branches(path: str, text: str, names: list[str], kinds: list[str]) -> list[str]:
    """``path:line: code`` for every line of ``text`` that compares with a family name or feature
    kind, compares ``...family`` with a string, or indexes a table by family."""
    n = "|".join(map(re.escape, names))
    k = "|".join(map(re.escape, kinds))
    op = r"(==|!=|\bnot\s+in\b|\bin\b)"
    rules = [
        rf"family\b[\"'\])]*\s*{op}\s*[(\[{{]?\s*[\"']",  # cfg.model.family == "x", meta["family"] in ("x", ...)
        rf"(==|!=)\s*[\"']({n})[\"']",  # ... == "spectrogram"
        rf"[\"']({n})[\"']\s*{op}",  # "spectrogram" == ..., "pianoroll" in ...
        rf"\b(not\s+)?in\s*[(\[{{][^)\]}}]*[\"']({n})[\"']",  # x in ("pianoroll", ...)
        r"\[[\w.]*family\]",  # DEFAULT_FORMAT[model.family]
        rf"\[[\"']({n})[\"']\]",  # DEFAULT_FORMAT["pianoroll"]
    ]
    if not path.startswith(KIND_OWNERS):
        rules.append(rf"kind\b[\"'\])]*\s*{op}\s*[(\[{{]?\s*[\"']({k})[\"']")  # manifest["kind"] == "mel"
    found = []
    for i, line in enumerate(text.splitlines(), 1):
        code = line.split("#")[0]
        if any(re.search(rule, code) for rule in rules):
            found.append(f"{path}:{i}: {line.strip()}")
    return found


def scanned_files() -> list[str]:
    files = [p.relative_to(ROOT).as_posix() for top in SCANNED for p in sorted((ROOT / top).rglob("*.py"))]
    return [f for f in files if not f.startswith(SKIPPED)]


def _registry_words() -> tuple[list[str], list[str]]:
    from musicgan.families import FAMILIES

    return list(FAMILIES), sorted({f.feature_kind for f in FAMILIES.values()})


def test_no_module_branches_on_a_family_name():
    names, kinds = _registry_words()
    found = [hit for f in scanned_files() if not f.startswith(PENDING)
             for hit in family_branches(f, (ROOT / f).read_text(), names, kinds)]
    assert not found, "look the family up (musicgan.families.get_family), do not compare names:\n" + "\n".join(found)


def test_pending_files_still_branch():
    """When a file in PENDING stops branching, take it off the list so the test above covers it."""
    names, kinds = _registry_words()
    for f in PENDING:
        assert family_branches(f, (ROOT / f).read_text(), names, kinds), f"{f} no longer branches: drop it from PENDING"


@pytest.mark.parametrize("line", [
    'if cfg.model.family == "spectrogram":',
    'audio = cfg.model.family != "pianoroll"',
    'if read_meta(path)["config"]["model"]["family"] == "spectrogram":',
    'if info.get("family") == "spectrogram":',
    'if self.model.family not in ("pianoroll", "spectrogram"):',
    'needs = {"pianoroll": "pianoroll", "spectrogram": "mel"}[cfg.model.family]',
    'fmt = body.format or DEFAULT_FORMAT[model.family]',
    'fmt = body.format or DEFAULT_FORMAT["pianoroll"]',
    'if manifest["kind"] == "mel":',
    'if self.data.get("kind") == "mel":',
    'if "spectrogram" == family:',
])
def test_the_checker_catches_a_branch(line):
    assert family_branches("musicgan/x.py", line, ["pianoroll", "spectrogram"], ["mel", "pianoroll"])


@pytest.mark.parametrize("line", [
    'family = get_family(cfg.model.family)',
    'if cfg.loss.kind == "wgan-gp":',
    'samples = [{"pianoroll": rows}]',
    'report = {"family": "spectrogram", "metrics": res}',
    'if spec.objective == "quality" and not family.voice_measures:',
    '# if cfg.model.family == "spectrogram": (a comment)',
])
def test_the_checker_passes_other_code(line):
    assert not family_branches("musicgan/x.py", line, ["pianoroll", "spectrogram"], ["mel", "pianoroll"])


def test_get_family_and_family_for_kind():
    from musicgan.families import FAMILIES, family_for_kind, get_family

    assert set(FAMILIES) == {"pianoroll", "spectrogram"}
    assert get_family("pianoroll").feature_kind == "pianoroll" and get_family("pianoroll").objective == "quality"
    assert get_family("spectrogram").feature_kind == "mel" and get_family("spectrogram").objective == "FMD"
    assert family_for_kind("mel") is get_family("spectrogram")
    assert family_for_kind("pianoroll") is get_family("pianoroll")


def test_unknown_names_are_one_line_errors_naming_the_known_ones():
    from musicgan.config import ConfigError
    from musicgan.families import family_for_kind, get_family

    with pytest.raises(ConfigError, match="must be 'pianoroll' or 'spectrogram', not 'midi-gan'"):
        get_family("midi-gan")
    with pytest.raises(ConfigError, match="no model family trains on 'waveform'.*'pianoroll', 'mel'"):
        family_for_kind("waveform")


def test_importing_the_registry_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, musicgan.families; print(sorted(m for m in ('torch', 'ray', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_a_third_family_is_its_own_module_plus_a_registration(monkeypatch):
    """A family registered here (as a module's one ``register`` line would) is found by every
    place that looks one up: the config check, the model builder, the data-kind check, the search."""
    from musicgan import families
    from musicgan.config import Config, ConfigError
    from musicgan.model import build_for_data
    from tuning.search import SearchSpec, objective_metric

    built = []
    toy = dataclasses.replace(families.get_family("spectrogram"), name="toy", feature_kind="toy-kind",
                              objective="FMD", build=lambda model_cfg, data: built.append(data) or ("G", "D"))
    monkeypatch.setitem(families.FAMILIES, "toy", toy)

    cfg = Config()
    cfg.model.family = "toy"
    cfg.loss.voice_stats_weight = cfg.loss.parallels_weight = cfg.loss.vertical_weight = 0.0
    cfg.model.leap_prior = False
    assert cfg.validate() is cfg
    assert families.get_family("toy") is toy and families.family_for_kind("toy-kind") is toy
    assert build_for_data(cfg.model, {"kind": "toy-kind"}) == ("G", "D") and built == [{"kind": "toy-kind"}]
    assert objective_metric(SearchSpec(data_dir="data/toy", space="s.yaml", run_dir="runs/toy"), cfg) == "FMD"
    families.check_feature_kind(cfg, {"kind": "toy-kind"}, "data/toy")
    with pytest.raises(ConfigError, match="holds pianoroll features, but model.family toy needs toy-kind"):
        families.check_feature_kind(cfg, {"kind": "pianoroll"}, "data/bach")

    monkeypatch.delitem(families.FAMILIES, "toy")
    with pytest.raises(ConfigError, match="model.family must be 'pianoroll' or 'spectrogram', not 'toy'"):
        cfg.validate()

"""The embedded data sources and the feature defaults each one owns.

``musicgan data build`` and :func:`musicgan.data.build.build` both ask here, so a build from
Python with ``FeatureConfig()`` gets the same features as the CLI, and ``--help`` shows the real
defaults. Imports only the standard library (the CLI reads it before anything heavy).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Source:
    """One embedded source: what ``--help`` says of it and the FeatureConfig fields it changes."""

    name: str
    summary: str
    features: dict = field(default_factory=dict)
    """FeatureConfig fields that differ from FeatureConfig's own defaults for this source."""


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("bach", "the Bach chorales inside music21 (4 tracks: S, A, T, B) [default]"),
    Source("folk", "Essen, O'Neill 1850 and Ryan's Mammoth tunes inside music21 (1 track)",
           {"track_names": ["melody"], "track_mode": "merge"}),
    Source("palestrina", "Palestrina's masses and motets inside music21 (about 1,300 pieces of 4-6 voices;\n"
                         "4 tracks by register: the outer voices and the two inner ones nearest the middle)"),
    Source("monteverdi", "Monteverdi's madrigals inside music21 (48, 5 voices and continuo; 4 tracks by\n"
                         "register, as palestrina)"),
    Source("quartets", "string quartets by Haydn, Mozart and Beethoven inside music21 (46 movements;\n"
                       "4 tracks by register; double stops keep their top note; pitches up to B6, as\n"
                       "a first violin goes there)",
           {"pitch_high": 96}),
    Source("styles", "bach, palestrina, monteverdi and quartets in one build, every phrase labelled\n"
                     "with its style (for one model conditioned on style); --limit counts files\n"
                     "per style; pitches 36:96, the quartets' range",
           {"pitch_high": 96}),
    Source("bach-audio", "the chorales rendered to audio (FluidSynth if installed, else sine tones)",
           {"kind": "mel", "track_names": ["audio"]}),
    Source("notes", "single notes over a pitch x instrument x velocity grid (NSynth-like), rendered\n"
                    "from General MIDI programs; labelled with pitch and instrument, for the\n"
                    "spectrogram GAN",
           {"kind": "mel", "track_names": ["audio"], "clip_seconds": 1.0, "n_mels": 80, "pitch_low": 48,
            "pitch_high": 84}),
)}


def with_source_defaults(source: str, fc):
    """``fc`` with every field still at FeatureConfig's default set to ``source``'s default.

    A field given a value other than FeatureConfig's default is kept. A folder or URI source has
    no defaults of its own, so ``fc`` comes back as it is.
    """
    from musicgan.config import FeatureConfig, from_dict, to_dict

    own = SOURCES[source].features if source in SOURCES else {}
    generic, given = to_dict(FeatureConfig()), to_dict(fc)
    return from_dict(FeatureConfig, {**given, **{k: v for k, v in own.items() if given[k] == generic[k]}})


def defaults_text(field_name: str, shown=str) -> str:
    """The sources whose default for ``field_name`` differs, as ``"; notes: 80"`` for a flag's help."""
    return "".join(f"; {s.name}: {shown(s.features[field_name])}" for s in SOURCES.values()
                   if field_name in s.features)

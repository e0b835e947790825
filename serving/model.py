"""The model a replica serves, Ray-free: :class:`LoadedModel` (a generator loaded from the registry
or a checkpoint folder, with what the API tells about it), the registry pointer a replica watches
to hot-swap a newly promoted version, and :func:`generate_isolated`, the batched forward in which
one request's failure stays its own."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from musicgan.families import get_family
from serving.schema import (AUDIO_GAP_S, MAX_AUDIO_S, MAX_BARS, MAX_BODY_BYTES, MAX_PHRASES, MAX_SAMPLES,
                            REQUEST_TIMEOUT_S)

logger = logging.getLogger("ray.serve")  # a replica's log (only the name: this imports no Ray)


class LoadedModel:
    """A generator plus what the API needs to know about it; replaced whole when a new version loads."""

    def __init__(self, ref: str):
        from musicgan.checkpoint import load_generator
        from musicgan.registry import resolve

        path, record = resolve(ref)
        self.g, self.cfg, self.data, self.meta = load_generator(path)
        self.ref, self.path, self.record = ref, str(path), record or {}
        self.labels: list[str] = list(self.data["labels"])
        self.phrase_bars = int(self.data["bars"])
        self.version = self.record.get("version") or f"step-{self.meta['step']}"
        self.name = self.record.get("name") or Path(path).parent.name
        self.family = self.cfg.model.family
        self.output = getattr(self.g, "output", None)  # pianoroll only: "binary" or "monophonic"
        from musicgan.render import feature_config

        self.fc = feature_config(self.data)
        self.pitches: list[int] = [int(p) for p in self.data.get("pitches") or []]  # audio only
        self.instruments: list[str] = list(self.data.get("instruments") or [])  # audio only
        self.masked = bool(getattr(self.g, "masked", False))  # takes known notes: the assistant's routes
        # what a promoted model ships beside its weights (the registry version's folder; or the checkpoint's)
        from musicgan.assist.assets import read_assets

        self.index, self.examples = read_assets(path, Path(path).parent)
        if self.index is not None:
            self.index.max_overlap(np.zeros(self.index.shape, bool))  # compile the kernel now, not in a request

    @property
    def hop_bars(self) -> int:
        """The step between the lengths ``/v1/generate`` takes: phrase by phrase with 2 bars of overlap
        for a masked model, whole phrases otherwise."""
        from musicgan.assist.fill import OVERLAP_BARS

        return self.phrase_bars - OVERLAP_BARS if self.masked else self.phrase_bars

    @property
    def tasks(self) -> list[str]:
        return ["generate", "harmonize", "continue", "inpaint"] if self.masked else ["generate"]

    def info(self) -> dict:
        rec = self.record
        family = get_family(self.family)
        out = {"name": self.name, "version": self.version, "step": self.meta["step"], "family": self.family,
               "metrics": rec.get("metrics", {}), "provenance": public_provenance(rec.get("provenance", {})),
               "feature_config": self.data["feature_config"], "max_samples": MAX_SAMPLES,
               "limits": {"max_phrases": MAX_PHRASES, "max_audio_seconds": MAX_AUDIO_S,
                          "max_body_bytes": MAX_BODY_BYTES, "request_timeout_s": REQUEST_TIMEOUT_S},
               "default_format": family.default_format, "promoted_at": rec.get("promoted_at")}
        out.update(family.serving_fields(self))
        return out


def pianoroll_fields(model: LoadedModel) -> dict:
    """What ``GET /v1/model`` adds for a pianoroll model: besides its shape, the tasks it can do, the
    example melodies it ships and whether its answers carry an originality figure."""
    from serving.assist import MAX_INPUT_BARS, MAX_UPLOAD_BYTES

    index = model.index
    return dict(labels=model.labels, styles=model.labels if len(model.labels) > 1 else [], output=model.output, phrase_bars=model.phrase_bars, max_bars=MAX_BARS,
                formats=list(get_family(model.family).formats), tasks=model.tasks, masked=model.masked,
                hop_bars=model.hop_bars, voices=list(model.data["track_names"]), examples=model.examples,
                originality=None if index is None else {"index_phrases": index.n_phrases,
                                                        "copy_threshold": index.threshold},
                max_input_bars=MAX_INPUT_BARS, max_upload_bytes=MAX_UPLOAD_BYTES)


def audio_fields(model: LoadedModel) -> dict:
    """What ``GET /v1/model`` adds for a spectrogram (audio) model."""
    return dict(pitches=model.pitches, instruments=model.instruments, sample_rate_hz=model.fc.sample_rate_hz,
                clip_seconds=model.fc.clip_seconds, gap_seconds=AUDIO_GAP_S,
                formats=list(get_family(model.family).formats))


def _is_location(value: str) -> bool:
    """Whether a provenance string names a place on some machine (a path or a URI)."""
    return (value.startswith(("/", "~", "\\")) or "://" in value or "/" in value or "\\" in value
            or (len(value) > 1 and value[1] == ":" and value[0].isalpha()))


def public_provenance(prov):
    """``provenance`` for the public ``/v1/model`` answer: every path or URI dropped (they tell a
    caller where the server keeps its files); hashes, trial ids and parameters stay."""
    if isinstance(prov, dict):
        return {k: public_provenance(v) for k, v in prov.items()
                if not (isinstance(v, str) and _is_location(v))}
    if isinstance(prov, list):
        return [public_provenance(v) for v in prov if not (isinstance(v, str) and _is_location(v))]
    return prov


def pointer_of(ref: str) -> str | None:
    """The ``latest`` file to watch when ``ref`` names a registry model (not a fixed version)."""
    from musicgan import storage

    loc = storage.resolve(ref)
    if loc.path.endswith("/latest") and loc.exists():
        return loc.uri
    if loc.join("latest").exists() and not loc.join("model.json").exists():
        return loc.join("latest").uri
    return None


def read_pointer(uri: str) -> str | None:
    """The version a ``latest`` pointer names; None while it cannot be read."""
    from musicgan import storage

    try:
        return storage.resolve(uri).read_json().get("version")
    except (OSError, ValueError, AttributeError):
        return None


def generate_isolated(model: LoadedModel, requests: list) -> list:
    """One generator forward for ``requests``; returns, per request, its array or its exception.

    Sampling is per request (a request that fails there gets its exception, the others their
    output). If the shared forward itself fails, each request runs alone, so only the one that
    breaks it fails. Outputs do not depend on batch-mates, so a request run alone gets the bytes
    it would have got in the batch.
    """
    many = get_family(model.family).generate_many
    try:
        return [r if isinstance(r, BaseException) else r.numpy() for r in many(model.g, requests)]
    except Exception as e:
        if len(requests) == 1:
            return [e]
        logger.warning(f"musicgan: a batched forward of {len(requests)} requests failed ({e!r}); "
                       "running them one by one")
        return [generate_isolated(model, [r])[0] for r in requests]


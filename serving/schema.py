"""The HTTP API's request model and its limits, and the checks of a request against the model being
served (its family, labels, phrase length, pitches), which need the model's description but not its
weights. No Ray here: these are used by the deployment (``serving.app``), the renderers
(``serving.render``) and tests alike.

Every check raises ``HTTPException(422, ...)`` naming what was wrong and what is allowed. ``model``
is a :class:`serving.model.LoadedModel` or anything with the attributes a check reads.
"""

from typing import Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_SAMPLES = 16
MAX_BARS = 32  # 8 four-bar phrases per sample: about 21 s at 90 bpm
MAX_BODY_BYTES = 16 * 1024
MIN_TEMPERATURE = 0.05  # below this (and above 0) the softened distribution under/overflows
# What one request may cost (checked before any work; over it is a 422 naming the limit):
MAX_PHRASES = 64  # generated phrases (pianoroll: samples x phrases each) or clips (spectrogram)
MAX_AUDIO_S = 300.0  # seconds of audio the server renders for it (WAV; a 16 kHz WAV is 32 kB a second)
REQUEST_TIMEOUT_S = 60.0  # Serve's proxy ends a request after this (http_options.request_timeout_s)
MEDIA = {"midi": "audio/midi", "wav": "audio/wav", "png": "image/png", "json": "application/json",
         "zip": "application/zip"}
AUDIO_GAP_S = 0.25  # silence between the clips of one WAV, so several notes are heard as several
# Fields that only mean something to a pianoroll model. Sent to a spectrogram model they are
# refused (422) rather than ignored: a caller who asks for 8 bars or a tempo should learn that
# they do not get them, as with unknown fields.
PIANOROLL_ONLY = ("n_bars", "temperature", "threshold", "condition", "tempo_qpm", "avoid_copies")


def temperature_floor(value: float | None) -> float | None:
    """A temperature is 0 (most likely notes) or at least :data:`MIN_TEMPERATURE` (the request models' check)."""
    if value is not None and 0.0 < value < MIN_TEMPERATURE:
        raise ValueError(f"temperature must be 0 (most likely notes) or at least {MIN_TEMPERATURE}; got {value:g}")
    return value


class GenerateRequest(BaseModel):
    """Body of ``POST /v1/generate``. Unknown fields are rejected (422), so typos do not pass silently."""

    # strict: a JSON true is not the integer 1, "3" is not 3; numbers must be finite
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    n_samples: int = Field(1, ge=1, le=MAX_SAMPLES, description="samples to generate (1-16)")
    n_bars: int | None = Field(None, ge=1, le=MAX_BARS,
                               description="bars per sample: a multiple of the model's phrase length "
                                           f"(4 bars for the Bach models), at most {MAX_BARS}; default one phrase")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="same seed + same parameters = same bytes; "
                                                                     "omitted: the server picks one and returns it")
    temperature: float | None = Field(None, ge=0.0, le=3.0,
                                      description=f"0 = most likely notes; from {MIN_TEMPERATURE} to 3 samples "
                                                  "(higher = more varied)")
    threshold: float | None = Field(None, gt=0.0, lt=1.0,
                                    description="binary-output models: a pitch sounds when its probability exceeds this")
    condition: str | None = Field(None, max_length=64, description="label to condition on, where the model has labels")
    format: Literal["midi", "wav", "json", "png", "zip"] | None = Field(
        None, description="what to return; omitted: midi for pianoroll models, wav for spectrogram (audio) models, "
                          "which cannot write midi")
    tempo_qpm: float = Field(90.0, ge=30.0, le=240.0, description="tempo of the MIDI/WAV, quarter notes a minute")
    pitch: int | None = Field(None, ge=0, le=127,
                              description="spectrogram (audio) models: MIDI pitch of the notes (60 = C4), one of "
                                          "the model's pitches (GET /v1/model); omitted: its first. "
                                          "All n_samples notes share it; they differ by seed")
    avoid_copies: bool | None = Field(None, description="pianoroll models: re-draw a sample that copies a training "
                                                        "phrase, up to 3 times (default on)")
    instrument: str | None = Field(None, max_length=64,
                                   description="spectrogram (audio) models: instrument name, one of the model's "
                                               "instruments (GET /v1/model); omitted: its first")

    _temperature_floor = field_validator("temperature")(staticmethod(temperature_floor))

    @model_validator(mode="after")
    def _one_binarisation(self):
        if self.temperature is not None and self.threshold is not None:
            raise ValueError("give temperature or threshold, not both")
        return self



def check_family_fields(body: GenerateRequest, model) -> str:
    """422 for fields the model's family cannot honour; returns the format to render."""
    from musicgan.families import get_family

    return get_family(model.family).check_request(body, model)


def check_audio_fields(body: GenerateRequest, model) -> str:
    """:func:`check_family_fields` for a spectrogram (audio) model."""
    from musicgan.families import get_family

    family = get_family(model.family)
    fmt = body.format or family.default_format
    given = [f for f in PIANOROLL_ONLY if f in body.model_fields_set and getattr(body, f) is not None]
    if given:
        raise HTTPException(422, f"{', '.join(given)}: not for this model, a spectrogram (audio) model that "
                                 f"makes one {model.fc.clip_seconds:g} s note per sample; choose the note "
                                 "with pitch and instrument")
    if fmt not in family.formats:
        raise HTTPException(422, f"format {fmt}: a spectrogram (audio) model makes audio, not notes, so it has no MIDI; "
                                 f"ask for one of {', '.join(family.formats)}")
    return fmt


def check_pianoroll_fields(body: GenerateRequest, model) -> str:
    """:func:`check_family_fields` for a pianoroll model."""
    from musicgan.families import get_family

    fmt = body.format or get_family(model.family).default_format
    given = [f for f in ("pitch", "instrument") if getattr(body, f) is not None]
    if given:
        raise HTTPException(422, f"{' and '.join(given)}: this is a pianoroll model (it writes whole phrases); "
                                 "pitch and instrument apply to spectrogram (audio) models only")
    return fmt


def phrases_of(body: GenerateRequest, model) -> int:
    """Generator forwards' phrases per sample that ``body.n_bars`` asks of a pianoroll ``model``: whole
    phrases side by side, or for a masked model one window per hop (phrase by phrase, each phrase taking
    its first bars from the one before); 422 when ``n_bars`` is not a multiple of the hop."""
    bars = body.n_bars or model.phrase_bars
    hop = getattr(model, "hop_bars", model.phrase_bars)
    if bars % hop:
        what = "a masked model writes phrase by phrase" if hop != model.phrase_bars else "this model's phrase length"
        raise HTTPException(422, f"n_bars must be a multiple of {hop} ({what}), up to {MAX_BARS}; got {bars}")
    if hop == model.phrase_bars:
        return bars // model.phrase_bars
    return max(1, -(-(bars - model.phrase_bars) // hop) + 1)


def label_index(body: GenerateRequest, model) -> int | None:
    """The index of ``body.condition`` among the model's labels (None when not given); 422 for an
    unconditional model or an unknown label."""
    if body.condition is None:
        return None
    if len(model.labels) <= 1:
        raise HTTPException(422, "condition: this model is unconditional (it has no labels)")
    if body.condition not in model.labels:
        raise HTTPException(422, f"condition: unknown label {body.condition!r}; this model knows {model.labels}")
    return model.labels.index(body.condition)


def note_condition(body: GenerateRequest, model) -> tuple[int, int]:
    """``(pitch index, instrument index)`` of the request; an unknown one is a 422 naming what the model knows."""
    from musicgan.audio_model import ConditionError, condition_index

    try:
        return condition_index(model.data, body.pitch, body.instrument)
    except ConditionError as e:
        raise HTTPException(422, str(e)) from None

"""The assistant's routes, Ray-free: ``POST /v1/harmonize``, ``/v1/continue`` and ``/v1/inpaint`` read a
melody or a piece (a MIDI upload or a JSON note list) onto the model's grid and turn it into one
:class:`~musicgan.assist.fill.FillJob`. The deployment (``serving.app``) runs the job window by window
through its batched forward, so these requests share generator forwards with ``/v1/generate``.

A body is either JSON (``application/json``: the note lists and options below) or a form
(``multipart/form-data``: a MIDI file in ``file`` and the same options as text fields). Everything a
user can get wrong is a 422 whose detail says what and what is allowed; an upload over
:data:`MAX_UPLOAD_BYTES` (a JSON body over :data:`MAX_JSON_BYTES`) is a 413. The input is transposed by the
smallest shift into the model's range and the answer moved back, so it sounds in the user's key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from fastapi import HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from musicgan.families import get_family
from serving.http_edge import json_safe, strict_json
from serving.schema import MAX_BARS, MAX_SAMPLES, temperature_floor

MAX_UPLOAD_BYTES = 256 * 1024
"""Largest form (a MIDI upload with its fields) an assistant route takes; a chorale is a few kB. Over it: 413."""
MAX_JSON_BYTES = 1024 * 1024
"""Largest JSON body of an assistant route (``serving.http_edge.BodyLimit``): room for the longest note list
the schema allows, so a list over :data:`MAX_NOTES` gets the schema's 422 rather than a 413."""
MAX_INPUT_BARS = 64
"""Longest melody or piece read."""
MAX_PIECE_BARS = 64
"""Longest answer: a continuation's prompt and new bars together."""
MAX_NOTES = 8192
"""Most notes in one JSON note list (64 bars of four voices in eighth notes is 2,048)."""
ROUTES = ("/v1/harmonize", "/v1/continue", "/v1/inpaint")
VOICE_TRACKS = {"soprano": 0, "bass": -1}
FORMATS = Literal["midi", "wav", "json", "png", "zip"]


class Note(BaseModel):
    """One note: MIDI pitch, start and length in beats (quarter notes; 4/4 bars of four beats)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    pitch: int = Field(ge=0, le=127, description="MIDI pitch (60 = C4)")
    start_beat: float = Field(ge=0, le=4 * MAX_INPUT_BARS, description="onset, in quarter notes from the start")
    duration_beats: float = Field(gt=0, le=4 * MAX_INPUT_BARS, description="length in quarter notes")
    track: str | int | None = Field(None, description="continue/inpaint: the voice, by name (alto) or index "
                                                      "(0 = the highest); ignored by harmonize")


class TaskOptions(BaseModel):
    """What every assistant route takes besides its music."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    n_samples: int = Field(1, ge=1, le=MAX_SAMPLES, description="versions to write (1-16)")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="same seed + same input = same bytes")
    temperature: float | None = Field(None, ge=0.0, le=3.0, description="0 = most likely notes; up to 3 samples")
    tempo_qpm: float | None = Field(None, ge=30.0, le=240.0,
                                    description="tempo of the answer; omitted: the MIDI file's (JSON input: 90)")
    format: FORMATS | None = Field(None, description="what to return (default midi)")
    avoid_copies: bool = Field(True, description="re-draw a version that copies a training phrase (up to 3 times)")
    condition: str | None = Field(None, max_length=64,
                                  description="the label (style) to write in, where the model has several "
                                              "(GET /v1/model: styles)")

    _temperature_floor = field_validator("temperature")(staticmethod(temperature_floor))


class HarmonizeRequest(TaskOptions):
    """``POST /v1/harmonize``: the other voices for a melody (``melody`` or a shipped ``example``)."""

    melody: list[Note] | None = Field(None, max_length=MAX_NOTES, description="the melody as notes")
    example: str | None = Field(None, max_length=64, description="an example melody's id (GET /v1/model: examples)")
    voice: Literal["soprano", "bass"] = Field("soprano", description="which voice the melody is")
    track: int | str | None = Field(None, description="MIDI upload: the track with the melody (index or name)")


class ContinueRequest(TaskOptions):
    """``POST /v1/continue``: ``n_bars`` new bars after a prompt."""

    notes: list[Note] | None = Field(None, max_length=MAX_NOTES, description="the prompt, each note with its track")
    n_bars: int = Field(ge=1, le=MAX_BARS, description=f"bars to add (1-{MAX_BARS})")


class InpaintRequest(TaskOptions):
    """``POST /v1/inpaint``: rewrite ``voices`` in ``bars``; every other note stays."""

    notes: list[Note] | None = Field(None, max_length=MAX_NOTES, description="the piece, each note with its track")
    bars: list[int] = Field(min_length=2, max_length=2,
                            description="[first, last] bar to rewrite, counted from 1, both included")
    voices: list[str] | None = Field(None, max_length=16, description="voices to rewrite (default: all)")


REQUESTS = {"harmonize": HarmonizeRequest, "continue": ContinueRequest, "inpaint": InpaintRequest}
LIST_FIELDS = ("bars", "voices")  # a form sends these as "3,4" / "alto,tenor"


@dataclass
class Task:
    """A request made into a job, with what its answer needs."""

    name: str
    body: TaskOptions
    job: object  # a musicgan.assist.fill.FillJob
    transpose_semitones: int
    tempo_qpm: float
    n_bars: int
    warnings: list[str] = field(default_factory=list)

    @property
    def given(self) -> np.ndarray:
        return self.job.known


# --- reading a body --------------------------------------------------------------------------------


async def read_body(request: Request, task: str) -> tuple[TaskOptions, bytes | None]:
    """The request model of ``task`` from a JSON body or a form, plus the uploaded MIDI file (None for JSON)."""
    model = REQUESTS[task]
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    upload = None
    if kind == "multipart/form-data":
        size = len(await request.body())  # already read, within MAX_JSON_BYTES, by the body limit
        if size > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload of {size} bytes: the limit is {MAX_UPLOAD_BYTES} bytes "
                                     f"({MAX_UPLOAD_BYTES // 1024} KiB) a request")
        try:
            form = await request.form(max_files=1, max_fields=16, max_part_size=MAX_UPLOAD_BYTES)
        except Exception as e:  # starlette's MultiPartException and parser errors: all the caller's
            raise HTTPException(422, f"could not read the form: {e}") from None
        fields: dict = {}
        for key, value in form.multi_items():
            if key == "file":
                if isinstance(value, str):
                    raise HTTPException(422, "file: must be a file upload (a MIDI file), not text")
                upload = await value.read()
            elif isinstance(value, str):
                fields[key] = [v.strip() for v in value.replace(":", ",").split(",") if v.strip()] \
                    if key in LIST_FIELDS else value
            else:
                raise HTTPException(422, f"{key}: only the field 'file' may be a file")
        if upload is None:
            raise HTTPException(422, "a form needs a MIDI file in the field 'file'")
        for key in ("melody", "notes"):
            if key in fields:
                raise HTTPException(422, f"{key}: send note lists as JSON; a form carries a MIDI file in 'file'")
        try:
            return model.model_validate(fields, strict=False), upload
        except ValidationError as e:
            raise HTTPException(422, json_safe(e.errors(include_url=False))) from None
    if kind not in ("application/json", ""):
        raise HTTPException(415, f"send application/json or multipart/form-data (a MIDI file in 'file'), not {kind}")
    raw = await request.body()
    try:
        obj = strict_json(raw) if raw else {}
    except ValueError as e:
        raise HTTPException(422, f"the body is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise HTTPException(422, "the body must be a JSON object")
    try:
        return model.model_validate(obj), None
    except ValidationError as e:
        raise HTTPException(422, json_safe(e.errors(include_url=False))) from None


# --- the checks against the model --------------------------------------------------------------------


def check_masked(model, task: str) -> None:
    """422 unless ``model`` can take known notes (a masked pianoroll generator)."""
    if not get_family(model.family).assistant:
        raise HTTPException(422, f"{task}: this is a {model.family} model (it makes single notes as audio); "
                                 "the assistant routes need a masked pianoroll model")
    if not getattr(model.g, "masked", False):
        raise HTTPException(422, f"{task}: this model is an unmasked pianoroll model: it writes phrases from "
                                 "scratch only (POST /v1/generate). Harmonize, continue and inpaint need a masked "
                                 "model: musicgan train --preset cpu-masked")


def _user_error(e: Exception) -> HTTPException:
    return HTTPException(422, str(e))


def _voice_index(track, names: list[str], what: str) -> int:
    if isinstance(track, int) and not isinstance(track, bool):
        if 0 <= track < len(names):
            return track
    elif isinstance(track, str):
        lower = [n.lower() for n in names]
        if track.lower() in lower:
            return lower.index(track.lower())
        if track.isdigit() and int(track) < len(names):
            return int(track)
    raise HTTPException(422, f"{what}: track {track!r} is not one of the model's voices "
                             f"({', '.join(names)}, or 0-{len(names) - 1})")


def _piece_from_notes(notes: list[Note] | None, model, tempo_qpm: float):
    from musicgan.assist.midi_in import piece_from_notes

    names = list(model.data["track_names"])
    if not notes:
        raise HTTPException(422, "notes: give the piece as notes (each with its track), or a MIDI file as a form")
    voices: list[list[dict]] = [[] for _ in names]
    for i, note in enumerate(notes):
        if note.track is None:
            raise HTTPException(422, f"notes, note {i}: needs a track (a voice name like {names[1]!r}, or an index)")
        voices[_voice_index(note.track, names, f"notes, note {i}")].append(
            {"pitch": note.pitch, "start_beat": note.start_beat, "duration_beats": note.duration_beats})
    return piece_from_notes(voices, model.data, max_bars=MAX_INPUT_BARS, tempo_qpm=tempo_qpm)


def _read_piece(body, upload: bytes | None, model):
    from musicgan.assist.midi_in import read_piece

    if upload is not None:
        return read_piece(upload, model.data, max_bars=MAX_INPUT_BARS, max_bytes=MAX_UPLOAD_BYTES)
    return _piece_from_notes(body.notes, model, body.tempo_qpm or 90.0)


def make_task(task: str, body: TaskOptions, upload: bytes | None, model, seed: int) -> Task:
    """The job for one request; a 422 for anything the input or the model cannot do."""
    from musicgan.assist.commands import AssistError
    from musicgan.assist.midi_in import MidiInputError

    check_masked(model, task)
    try:
        return _MAKERS[task](body, upload, model, seed)
    except (MidiInputError, AssistError) as e:
        raise _user_error(e) from None


def _options(body: TaskOptions, seed: int, model) -> dict:
    from serving.schema import label_index

    return dict(n=body.n_samples, seed=seed, temperature=body.temperature or 0.0, label=label_index(body, model))


def _harmonize(body: HarmonizeRequest, upload, model, seed) -> Task:
    from musicgan.assist.fill import harmonize_job
    from musicgan.assist.midi_in import melody_from_notes, read_melody
    from musicgan.families.pianoroll import voice_ranges

    data, g = model.data, model.g
    names = list(data["track_names"])
    track = VOICE_TRACKS[body.voice] % len(names)
    given = sum(x is not None for x in (upload, body.melody, body.example))
    if given != 1:
        raise HTTPException(422, "give the melody one way: a MIDI file (form field 'file'), 'melody' (notes) or "
                                 f"'example' (one of {', '.join(e['id'] for e in model.examples) or 'none here'})")
    if body.track is not None and upload is None:
        raise HTTPException(422, "track: chooses a track of an uploaded MIDI file; notes have no tracks to choose")
    vrange = voice_ranges(data)[track]
    if upload is not None:
        melody = read_melody(upload, data, vrange, track=body.track, max_bars=MAX_INPUT_BARS,
                             max_bytes=MAX_UPLOAD_BYTES)
    elif body.example is not None:
        example = next((e for e in model.examples if e["id"] == body.example), None)
        if example is None:
            raise HTTPException(422, f"example {body.example!r} is not one of this model's examples: "
                                     f"{', '.join(e['id'] for e in model.examples) or 'it has none'}")
        melody = melody_from_notes(example["notes"], data, vrange, max_bars=MAX_INPUT_BARS,
                                   tempo_qpm=float(example.get("tempo_qpm", 90.0)))
    else:
        if not body.melody:
            raise HTTPException(422, "melody: give at least one note, like {'pitch': 60, 'start_beat': 0, "
                                     "'duration_beats': 1}")
        melody = melody_from_notes([n.model_dump(exclude={"track"}) for n in body.melody], data, vrange,
                                   max_bars=MAX_INPUT_BARS, tempo_qpm=body.tempo_qpm or 90.0)
    job = harmonize_job(melody.line, track, len(names), g.n_pitches, g.steps_per_bar, **_options(body, seed, model))
    return Task("harmonize", body, job, melody.transpose_semitones, body.tempo_qpm or melody.tempo_qpm,
                melody.n_bars, melody.warnings)


def _continue(body: ContinueRequest, upload, model, seed) -> Task:
    from musicgan.assist.fill import continue_job

    piece = _read_piece(body, upload, model)
    total = piece.n_bars + body.n_bars
    if total > MAX_PIECE_BARS:
        raise HTTPException(422, f"the prompt ({piece.n_bars} bars) and n_bars {body.n_bars} make {total} bars; "
                                 f"the limit is {MAX_PIECE_BARS}")
    job = continue_job(piece.roll, body.n_bars, model.g.steps_per_bar, **_options(body, seed, model))
    # a voice the prompt lacks is unknown in the prompt bars too: the model writes it there as well
    job.known[:, : piece.roll.shape[1]] = np.asarray(piece.present)[:, None]
    return Task("continue", body, job, piece.transpose_semitones, body.tempo_qpm or piece.tempo_qpm, total,
                piece.warnings)


def _inpaint(body: InpaintRequest, upload, model, seed) -> Task:
    from musicgan.assist.commands import voice_indices
    from musicgan.assist.fill import inpaint_job

    names = list(model.data["track_names"])
    voices = voice_indices(body.voices, names, "voices")
    piece = _read_piece(body, upload, model)
    first, last = body.bars
    if not 1 <= first <= last <= piece.n_bars:
        raise HTTPException(422, f"bars [{first}, {last}]: bars count from 1 and both ends are included; this piece "
                                 f"has {piece.n_bars} bars, so use 1 <= first <= last <= {piece.n_bars}")
    job = inpaint_job(piece.roll, first - 1, last, voices, model.g.steps_per_bar, **_options(body, seed, model))
    return Task("inpaint", body, job, piece.transpose_semitones, body.tempo_qpm or piece.tempo_qpm, piece.n_bars,
                piece.warnings)


_MAKERS = {"harmonize": _harmonize, "continue": _continue, "inpaint": _inpaint}


def openapi_body(task: str) -> dict:
    """The ``requestBody`` of a route for the OpenAPI document: JSON (the request model) or a form with a file."""
    model = REQUESTS[task]
    form = {"type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary", "description": "a MIDI file"},
                           **{k: {"type": "string"} for k in model.model_fields if k not in ("melody", "notes")}}}
    return {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
        "multipart/form-data": {"schema": form}}}


def openapi_schemas() -> dict:
    """The request models' JSON schemas, for the OpenAPI document's components."""
    out = {}
    for model in REQUESTS.values():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out

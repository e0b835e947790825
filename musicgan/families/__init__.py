"""The model families: one :class:`Family` per module here, registered by name.

A family is everything that differs between the kinds of model musicgan trains: the feature kind
it trains on, how its generator and critic are built, how a data batch becomes tensors, how it is
evaluated, how its samples are written, what a request to it may ask and how the answer is
rendered, and what a search ranks it by. Training, evaluation, the CLI, serving and tuning look a
family up once (:func:`get_family`) and call its members; nothing outside this package compares a
family's name (``tests/test_families.py`` greps for it).

Adding a family: a module here that builds its :class:`Family` and calls :func:`register`, plus its
import line at the bottom of this file.

Importing this package imports no torch, Ray or numpy: members that need them import them when
called (:func:`lazy`), so the CLI can check a config before anything heavy loads.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from musicgan.config import ConfigError


def lazy(target: str) -> Callable:
    """A function that imports ``"package.module:name"`` on its first call and calls it."""
    module, name = target.split(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"Calls {target} (imported when first called)."
    return call


@dataclass(frozen=True)
class Family:
    """What one model family declares. Callables take plain arguments (config, data info, arrays)."""

    name: str
    """The value of ``model.family`` that selects it."""
    feature_kind: str
    """The data build's ``kind`` it trains on (``musicgan data build`` writes it in the manifest)."""
    preset_hint: str
    """What to train data of this feature kind with, for the message when kinds do not match."""
    voice_measures: bool
    """Whether it has voices: the voice measures and quality objective, the voice losses, the leap prior."""
    objective: str
    """What ``musicgan tune --objective auto`` ranks its trials by (a key of the evaluator's report)."""

    # model
    build: Callable[[Any, dict], tuple]
    """``(model_cfg, data_info) -> (generator, critic)``."""
    data_info: Callable[[dict], dict]
    """``manifest -> dict``: what a checkpoint needs about the data beyond the common keys."""
    batch_tensors: Callable[[dict, Any], Callable]
    """``(data_info, device) -> to_tensors``, where ``to_tensors(batch, rows) -> (x, conditions)``."""

    # evaluation
    evaluator: Callable[..., Callable]
    """``(data_dir, data_info, n_samples, fmd_untrained) -> evaluator``; ``evaluator(g) -> (metrics, fake)``."""
    eval_line: Callable[[int, dict], str]
    """``(step, metrics) -> str``: the line training prints at each evaluation."""
    untrained_fmd: Callable[..., float]
    """``(g, n_samples, data_info, data_dir) -> float``: FMD of an untrained generator, the yardstick."""
    evaluate: Callable[..., dict]
    """``(checkpoint, data_dir, n, seed, json_path) -> report``: ``musicgan evaluate``."""
    table_text: Callable[[dict], str]
    """``report -> str``: the report as ``musicgan evaluate`` prints it."""

    # samples
    sample: Callable[..., int]
    """``(args, g, data_info, meta, path) -> exit code``: ``musicgan sample``."""
    write_run_samples: Callable[..., None]
    """``(fake, data_info, out_dir, step)``: a training run's samples at one evaluation."""
    plot_run_metrics: Callable[[list, Any], None]
    """``(metric_rows, run_dir)``: a training run's metric plots beside its losses."""

    # serving
    default_format: str
    """The response format when a request names none."""
    formats: tuple[str, ...]
    """The response formats it can render."""
    serving_fields: Callable[[Any], dict]
    """``loaded_model -> dict``: what ``GET /v1/model`` tells about it beyond the common keys."""
    check_request: Callable[[Any, Any], str]
    """``(body, loaded_model) -> format``: a 422 for request fields it cannot honour."""
    request_cost: Callable[[Any, Any], Any]
    """``(body, loaded_model) -> serving.app.Cost``."""
    render: Callable[..., bytes]
    """The response body from generated arrays (``serving.render.render`` / ``render_audio``)."""
    make_request: Callable[..., tuple]
    """``(body, loaded_model, cost, seed, headers) -> (request, draw, inline)``: what to generate,
    how to render it, and whether rendering is cheap enough to run inline."""
    generate_many: Callable[[Any, list], list]
    """``(g, requests) -> [array or exception per request]``: one batched forward."""
    serve_summary: Callable[[str, dict], list[str]]
    """``(url, GET /v1/model answer) -> lines``: how ``musicgan serve`` says to call it."""
    assistant: bool = False
    """Whether the creation assistant works on it: its masked models harmonize, continue and fill in; its
    answers carry their overlap with the training phrases; a promoted model ships that index and example
    melodies (:mod:`musicgan.assist.assets`)."""


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    """The family called ``name``; a :class:`ConfigError` naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"model.family must be {' or '.join(map(repr, FAMILIES))}, not {name!r}") from None


def family_for_kind(feature_kind: str) -> Family:
    """The family that trains on data of ``feature_kind`` (the first registered, if several do)."""
    for family in FAMILIES.values():
        if family.feature_kind == feature_kind:
            return family
    known = ", ".join(repr(f.feature_kind) for f in FAMILIES.values())
    raise ConfigError(f"no model family trains on {feature_kind!r} features; the families train on {known}")


def check_feature_kind(cfg, manifest: dict, data_dir: str) -> None:
    """A :class:`ConfigError` when the data in ``data_dir`` is not the feature kind ``cfg``'s family trains on."""
    needs = get_family(cfg.model.family).feature_kind
    kind = manifest["kind"]
    if kind != needs:
        hint = next((f.preset_hint for f in FAMILIES.values() if f.feature_kind == kind), "another data build")
        raise ConfigError(f"{data_dir} holds {kind} features, but model.family {cfg.model.family} "
                          f"needs {needs}; use {hint}")


# One line per family: importing its module registers it.
from musicgan.families import pianoroll  # noqa: E402,F401
from musicgan.families import spectrogram  # noqa: E402,F401

"""Search spaces: a YAML file of dotted config keys, each with one sampler.

::

    # tuning/spaces/default.yaml
    optim.lr_g: {loguniform: [1.0e-4, 3.0e-3]}
    loss.critic_steps: {choice: [1, 2, 3]}
    model.channels: {randint: [64, 193]}        # high exclusive, like Python's range

Samplers: ``loguniform [low, high]``, ``uniform [low, high]``, ``choice [values...]`` and
``randint [low, high)``. Every key must exist in :class:`musicgan.config.Config` and every value
the sampler can produce must make a valid config; both are checked before anything starts, so a
typo costs a second, not a cluster's worth of failed trials.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from musicgan.config import Config, ConfigError, get_path, set_path

SAMPLERS = ("loguniform", "uniform", "choice", "randint")
# Keys the trial driver owns: a search cannot vary them per trial.
FIXED_KEYS = ("train.num_workers", "train.use_gpu", "train.cpus_per_worker", "train.total_steps",
              "train.eval_every_steps", "train.checkpoint_every_steps", "model.family")


class SpaceError(ConfigError):
    """A search-space file that cannot be used; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class Param:
    key: str
    sampler: str
    args: tuple

    def to_tune(self):
        from ray import tune

        if self.sampler == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.sampler)(*self.args)

    def corners(self) -> list:
        """Values at the edges of the range: enough to check that every sample is a valid config."""
        if self.sampler == "choice":
            return list(self.args)
        if self.sampler == "randint":
            return [self.args[0], self.args[1] - 1]
        return list(self.args)

    def describe(self) -> str:
        if self.sampler == "choice":
            return f"choice {list(self.args)}"
        return f"{self.sampler} [{self.args[0]:g}, {self.args[1]:g}{')' if self.sampler == 'randint' else ']'}"


def load_space(path: str | Path, base: Config | None = None) -> list[Param]:
    """Read and check a space file against ``base`` (the preset the search starts from)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"search space {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpaceError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(f"{path} must map config keys to samplers, e.g. 'optim.lr_g: {{loguniform: [1e-4, 1e-2]}}'")
    return parse_space(raw, base or Config(), source=str(path))


def parse_space(raw: dict, base: Config, source: str = "space") -> list[Param]:
    params = []
    for key, spec in raw.items():
        where = f"{source}: {key}"
        if not isinstance(key, str):
            raise SpaceError(f"{where}: keys must be dotted config paths such as optim.lr_g")
        try:
            current = get_path(base, key)
        except ConfigError:
            raise SpaceError(f"{where}: not a config key (known keys: {', '.join(known_keys(base))})") from None
        if dataclasses.is_dataclass(current):
            raise SpaceError(f"{where}: names a config section, not a value; pick one of its fields")
        if key in FIXED_KEYS:
            raise SpaceError(f"{where}: is fixed for a whole search (set it with --preset/--set instead)")
        if not isinstance(spec, dict) or len(spec) != 1:
            raise SpaceError(f"{where}: expected one sampler, e.g. {{loguniform: [1e-4, 1e-2]}}; got {spec!r}")
        (sampler, args), = spec.items()
        params.append(_param(where, key, sampler, args, current))
    _check_corners(params, base, source)
    return params


def _param(where: str, key: str, sampler, args, current) -> Param:
    if sampler not in SAMPLERS:
        raise SpaceError(f"{where}: unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if not isinstance(args, list) or not args:
        raise SpaceError(f"{where}: {sampler} needs a list, e.g. {sampler}: [low, high]")
    if sampler == "choice":
        for v in args:
            if type(current) is float and type(v) is int:
                continue  # 1 for a float field is fine
            if type(v) is not type(current):
                raise SpaceError(f"{where}: choice value {v!r} ({type(v).__name__}) does not match the key's "
                                 f"type ({type(current).__name__}, now {current!r})")
        return Param(key, sampler, tuple(args))
    if len(args) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in args):
        raise SpaceError(f"{where}: {sampler} needs [low, high] numbers, got {args!r}")
    low, high = args
    if not low < high:
        raise SpaceError(f"{where}: {sampler} needs low < high, got [{low}, {high}]")
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        raise SpaceError(f"{where}: {sampler} samples numbers, but {key} is a {type(current).__name__}")
    if sampler == "randint":
        if type(current) is not int or not (isinstance(low, int) and isinstance(high, int)):
            raise SpaceError(f"{where}: randint needs whole-number bounds and an int key")
        return Param(key, sampler, (int(low), int(high)))
    if type(current) is int:
        raise SpaceError(f"{where}: {key} is an int; use randint or choice, not {sampler}")
    if sampler == "loguniform" and low <= 0:
        raise SpaceError(f"{where}: loguniform needs low > 0, got {low}")
    return Param(key, sampler, (float(low), float(high)))


def _check_corners(params: list[Param], base: Config, source: str) -> None:
    """Each parameter at each end of its range, the others at the base value, must validate."""
    for p in params:
        for value in p.corners():
            cfg = apply_params(base, {p.key: value})
            try:
                cfg.validate()
            except ConfigError as e:
                raise SpaceError(f"{source}: {p.key}={value!r} makes an invalid config: {e}") from None


def apply_params(base: Config, values: dict) -> Config:
    """A copy of ``base`` with the sampled ``{dotted key: value}`` set."""
    cfg = copy.deepcopy(base)
    for key, value in values.items():
        current = get_path(cfg, key)
        if type(current) is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        set_path(cfg, key, value)
    return cfg


def known_keys(cfg, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        name = prefix + f.name
        if dataclasses.is_dataclass(value):
            out += known_keys(value, name + ".")
        elif name not in FIXED_KEYS and name != "preset":
            out.append(name)
    return out

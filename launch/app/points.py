"""The points of a sweep, composed, typed, derived and checked before anything is launched or
submitted; each knows what its job produces.

Composing every point through Hydra costs a fraction of a second each (defaults list, config
files, merges), minutes for a sweep of thousands of points. :class:`PointComposer` composes
through Hydra once per distinct *base* (a point's config-group choices such as `model=`, `job=`,
`experiment=`, `hydra/launcher=`, and every override that is not a plain `key=value`), then
applies each point's plain value overrides to that base, the way Hydra itself applies them after
composing the defaults:

- the fast route: each value is validated and converted by the base's own OmegaConf node for
  that key (so `1` becomes `1.0` in a float field, a bad value is refused as Hydra would) and set
  on a copy of the base's typed config; used when the base's run config has no interpolation
  (so no other value depends on the overridden one);
- the medium route: Hydra's own override application on a copy of the composed base (a base
  whose run config interpolates other keys);
- a full Hydra compose of the point for anything else: `+key`, `++key`, `~key`, `key@pkg`,
  `hydra.*` keys, list or dict values, interpolated values, two overrides of one key or of a key
  and its parent, and any point the faster routes cannot place (its errors are then Hydra's).

tests/launch/app/test_fast_compose.py checks that every route gives what a full compose gives.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from .. import jobs
from ..config import RunConfig
from ..errors import ConfigError


@dataclass
class SweepPoint:
    """One point of a sweep: its overrides, its typed config and what its job produces."""

    index: int
    overrides: list[str]
    config: RunConfig
    outputs: jobs.Outputs

    @property
    def run_dir(self) -> Path:
        """The folder the point's job writes (its run folder, or an output folder)."""
        return self.outputs.folder

    @property
    def world(self) -> int:
        """Ranks of this run (tp x pp x dp)."""
        p = self.config.parallel
        return p.tp * p.pp * p.dp


def run_part(cfg: DictConfig) -> DictConfig:
    """The run's own config (everything but the `hydra` node), resolved."""
    body = OmegaConf.create({k: v for k, v in cfg.items() if k != "hydra"})
    OmegaConf.resolve(body)
    return body


def _label(index: int, overrides: list[str]) -> str:
    return f"sweep point #{index} ({' '.join(overrides) or 'no overrides'})"


def _typed(cfg: DictConfig, label: str) -> RunConfig:
    try:
        return jobs.typed(run_part(cfg))
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    except Exception as exc:  # OmegaConf validation of a typed field, a missing key...
        raise ConfigError(f"{label}: {type(exc).__name__}: {exc}") from None


def _finish(typed: RunConfig, index: int, overrides: list[str],
            outputs: Callable[[RunConfig], jobs.Outputs] = jobs.outputs) -> SweepPoint:
    """Derive, check and place a typed point; ConfigError lists all its problems."""
    problems = []
    try:
        typed = jobs.derive(typed)
    except ConfigError as exc:
        problems.append(str(exc))
    problems += jobs.check_config(typed)
    if problems:
        raise ConfigError(f"{_label(index, overrides)}:\n      - " + "\n      - ".join(
            p.replace("\n", "\n        ") for p in dict.fromkeys(problems)))
    return SweepPoint(index, list(overrides), typed, outputs(typed))


def resolve_point(cfg: DictConfig, index: int, overrides: list[str]) -> SweepPoint:
    """Type, derive, check and place one composed point; ConfigError lists all its problems."""
    return _finish(_typed(cfg, _label(index, overrides)), index, overrides)


def check_all(points: list[SweepPoint], errors: list[str]) -> None:
    """Refuse the whole sweep when any point is invalid (all problems listed at once) or two
    points would write the same outputs."""
    seen: dict[tuple, int] = {}
    for p in points:
        key = (p.outputs.folder, p.outputs.record, p.outputs.files)
        if key in seen:
            errors.append(f"sweep points #{seen[key]} and #{p.index} compute the same run "
                          f"({p.run_dir.name}); drop the duplicate or vary a seed")
        seen[key] = p.index
    raise_errors(errors)


def raise_errors(errors: list[str]) -> None:
    """ConfigError 'nothing was launched' listing (the first ten of) `errors`, if any."""
    if errors:
        shown = errors[:10] + ([f"... and {len(errors) - 10} more"] if len(errors) > 10 else [])
        raise ConfigError(f"nothing was launched: {len(errors)} problem(s) in the sweep:\n  - "
                          + "\n  - ".join(shown))


# -------------------------------------------------------------------------------------------
# Composing many points: Hydra once per base, value overrides on the base
# -------------------------------------------------------------------------------------------

#: Keys and values simple enough to be parsed many at a time (see PointComposer._parse_all).
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
_SIMPLE_VALUE = re.compile(r"[A-Za-z0-9_.+\-]+")


class _Unplaceable(Exception):
    """A point the faster routes cannot compose; it goes through a full Hydra compose."""


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(obj: Any) -> Any:
    """A typed config as plain containers, as `OmegaConf.to_container(structured(obj))` gives it
    for configs whose values came out of OmegaConf (checked per base by `_same`)."""
    cls = type(obj)
    names = _FIELD_NAMES.get(cls)
    if names is None and dataclasses.is_dataclass(cls):
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    if names is not None:
        return {name: _plain(getattr(obj, name)) for name in names}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _same(a: Any, b: Any) -> bool:
    """Equal, with equal types all the way down (1 and 1.0 differ: a folder hash would)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _default_outputs(plain: dict) -> jobs.Outputs:
    """`launch.outputs.run_folder_outputs` of a config already made plain (checked against it
    on every base before use)."""
    from ..run_dir import RunDir

    root = RunDir.for_config(plain).root.expanduser().resolve()
    return jobs.Outputs(folder=root, record=root / "run.json")


#: Resolvers that read no config value: an interpolation made only of these (with literal
#: arguments) does not change when another key is overridden.
_CONFIG_FREE_RESOLVERS = {"oc.env", "oc.decode", "now", "asymptote.pid"}
_RESOLVER_CALL = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")


def _reads_config(text: str) -> bool:
    """Whether an interpolation string may read another config value (`${a.b}`, `${..x}`, a
    resolver that may look at the config)."""
    for start in (m.start() for m in re.finditer(r"\$\{", text)):
        call = _RESOLVER_CALL.match(text, start)
        if call is None or call.group(1) not in _CONFIG_FREE_RESOLVERS:
            return True
    return False


def _reads_other_values(node: Any) -> bool:
    """Whether any value under `node` is an interpolation that may read another value."""
    if node._is_interpolation():
        return _reads_config(str(node._value()))
    if isinstance(node, DictConfig):
        children = (node._get_node(k) for k in node.keys())
    elif OmegaConf.is_list(node):
        children = (node._get_node(i) for i in range(len(node)))
    else:
        return False
    return any(child is not None and _reads_other_values(child) for child in children)


class _Base:
    """One Hydra compose shared by the points that differ from it only in value overrides."""

    def __init__(self, cfg: DictConfig, overrides: list[str]):
        self.cfg = cfg
        self.overrides = overrides
        self.typed: RunConfig | None = None
        self.job = None
        self.fast = False  # value overrides may be set on the typed config
        self.shares_sections = False
        self.plain_outputs = False  # outputs may be computed from _plain (no derive/outputs hook)
        self._nodes: dict[str, Any] = {}
        self._values: dict[tuple, Any] = {}
        body = [cfg._get_node(k) for k in cfg.keys() if k != "hydra"]
        if any(_reads_other_values(n) for n in body):
            return  # another value may depend on an overridden one: medium route
        try:
            self.typed = jobs.typed(run_part(cfg))
            self.job = jobs.get(self.typed.job)
        except Exception:  # the points' own composes will say what is wrong
            return
        self.fast = True
        module = self.job.module
        # Without a derive step nothing changes a point's config after this: points may share
        # the sections their overrides do not touch.
        self.shares_sections = not hasattr(module, "derive")
        if not hasattr(module, "derive") and not hasattr(module, "outputs"):
            plain = _plain(self.typed)
            from ..config import to_dict

            self.plain_outputs = (_same(plain, to_dict(self.typed))
                                  and _default_outputs(plain) == jobs.outputs(self.typed))

    def convert(self, key: str, value: Any) -> Any:
        """`value` as the base's node for `key` stores it (validated and converted as Hydra's
        `key=value` would); _Unplaceable when the key is not a plain value of the config."""
        cache_key = (key, type(value), value)
        try:
            return self._values[cache_key]
        except (KeyError, TypeError):
            pass
        node = self._nodes.get(key)
        if node is None:
            node = self.cfg
            try:
                for part in key.split("."):
                    node = node._get_node(part) if isinstance(node, DictConfig) else None
                    if node is None:
                        raise _Unplaceable(key)
            except Exception as exc:  # a key the config does not have (struct mode)
                raise _Unplaceable(key) from exc
            if OmegaConf.is_config(node) or node._is_interpolation():
                raise _Unplaceable(key)
            self._nodes[key] = node
        fresh = copy.copy(node)  # same parent (flags) and metadata; _set_value replaces _val
        try:
            fresh._set_value(value)
        except Exception as exc:  # invalid for the field: Hydra words the error
            raise _Unplaceable(key) from exc
        if fresh._is_interpolation() or fresh._is_missing():
            raise _Unplaceable(key)
        converted = fresh._value()
        try:
            self._values[cache_key] = converted
        except TypeError:
            pass
        return converted


def _get(obj: Any, part: str) -> Any:
    return obj[part] if isinstance(obj, dict) else getattr(obj, part)


def _put(obj: Any, part: str, value: Any) -> None:
    if isinstance(obj, dict):
        obj[part] = value
    else:
        setattr(obj, part, value)


def _copy_path(typed: Any, key: str) -> Any:
    """A copy of `typed` whose sections on the way to `key` are copies (the rest is shared:
    nothing changes a checked point's sections in place)."""
    root = copy.copy(typed)
    obj = root
    for part in key.split(".")[:-1]:
        child = copy.copy(_get(obj, part))
        _put(obj, part, child)
        obj = child
    return root


def _set_path(obj: Any, key: str, value: Any) -> None:
    """Set `a.b.c` on a typed config (dataclasses, and dicts such as `tags`)."""
    parts = key.split(".")
    for part in parts[:-1]:
        obj = _get(obj, part)
    last = parts[-1]
    if isinstance(obj, dict):
        if last not in obj:
            raise _Unplaceable(key)
        obj[last] = value
    elif dataclasses.is_dataclass(obj) and last in {f.name for f in dataclasses.fields(obj)}:
        current = getattr(obj, last)
        if current is not None and value is not None and type(current) is not type(value):
            # e.g. a field typed Any: the typed merge might convert differently; let Hydra do it
            raise _Unplaceable(key)
        setattr(obj, last, value)
    else:
        raise _Unplaceable(key)


class PointComposer:
    """Composes the points of a sweep (see the module docstring).

    `load(overrides)` is a full Hydra compose of one point (with the `hydra` node), the
    function every route must agree with; `is_group(name)` tells a config group (`model`,
    `job`, ...) from a config key."""

    def __init__(self, load: Callable[[list[str]], DictConfig],
                 is_group: Callable[[str], bool] | None = None):
        self._load = load
        self._is_group = is_group
        self._parsed: dict[str, Any] = {}
        self._overrides: dict[str, Any] = {}
        self._bases: dict[tuple[str, ...], _Base | None] = {}
        self.counts = {"fast": 0, "medium": 0, "full": 0, "bases": 0}

    # ---- parsing -----------------------------------------------------------------------

    def _parse_all(self, lines: list[str]) -> None:
        """Parse many override lines at once: simple `key=value` lines of one key as one
        choice sweep `key=v1,v2,...` (one parse instead of one each; the elements of a sweep
        follow the same grammar as a lone value), the rest one by one when asked."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import ChoiceSweep, ValueType

        by_key: dict[str, list[str]] = {}
        for line in dict.fromkeys(lines):
            if line in self._parsed:
                continue
            key, sep, value = line.partition("=")
            if sep and _SIMPLE_KEY.fullmatch(key) and _SIMPLE_VALUE.fullmatch(value):
                by_key.setdefault(key, []).append(value)
        parser = OverridesParser.create()
        for key, values in by_key.items():
            if len(values) < 2:
                continue
            try:
                (sweep,) = parser.parse_overrides([f"{key}={','.join(values)}"])
            except Exception:
                continue
            elements = sweep.value()
            if (sweep.value_type != ValueType.SIMPLE_CHOICE_SWEEP
                    or not isinstance(elements, ChoiceSweep) or len(elements.list) != len(values)
                    or sweep.package is not None or sweep.type != sweep.type.CHANGE):
                continue
            for value, element in zip(values, elements.list):
                if element is None or type(element) in (int, float, bool, str):
                    self._parsed[f"{key}={value}"] = ("value", key, element)

    def _parse(self, line: str):
        """("value", key, value) for a plain value override, ("other", key, Override) else;
        None when the line does not parse (a full compose reports it)."""
        found = self._parsed.get(line)
        if found is not None:
            return found
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:
            (override,) = OverridesParser.create().parse_overrides([line])
        except Exception:
            return None
        self._overrides[line] = override
        key, value = override.key_or_group, None
        plain = (override.type == override.type.CHANGE and override.package is None
                 and not override.is_sweep_override())
        if plain:
            value = override.value()
            plain = value is None or type(value) in (int, float, bool, str)
        result = ("value", key, value) if plain else ("other", key, override)
        self._parsed[line] = result
        return result

    def _is_value_key(self, key: str) -> bool:
        if key == "hydra" or key.startswith("hydra.") or "/" in key:
            return False
        if self._is_group is None:
            return "." in key  # without the repository, a bare name may be a group
        try:
            return not self._is_group(key)
        except Exception:
            return False

    def split(self, overrides: list[str]) -> tuple[tuple[str, ...], list[tuple[str, Any, str]]]:
        """(the base's overrides, the point's value overrides as (key, value, line)).
        _Unplaceable when a line does not parse."""
        parsed = []
        for line in overrides:
            p = self._parse(line)
            if p is None:
                raise _Unplaceable(line)
            parsed.append((line, p))
        keys = [p[1] for _, p in parsed]
        base, leaves = [], []
        for line, (kind, key, value) in parsed:
            overlaps = sum(k == key or k.startswith(key + ".") or key.startswith(k + ".")
                           for k in keys) > 1
            if (kind == "value" and not overlaps and self._is_value_key(key)
                    and not (isinstance(value, str) and ("${" in value or value == "???"))):
                leaves.append((key, value, line))
            else:
                base.append(line)
        return tuple(base), leaves

    # ---- composing ---------------------------------------------------------------------

    def _base(self, key: tuple[str, ...]) -> _Base | None:
        if key not in self._bases:
            try:
                cfg = self._load(list(key))
            except Exception:  # the point's own compose will report it
                self._bases[key] = None
            else:
                self._bases[key] = _Base(cfg, list(key))
                self.counts["bases"] += 1
        return self._bases[key]

    def compose(self, overrides: list[str]) -> DictConfig:
        """The composed config (with the `hydra` node) of one point, by the medium route when
        possible: equal to `load(overrides)`."""
        try:
            return self._compose_on_base(overrides)
        except _Unplaceable:
            return self._load(list(overrides))

    def _compose_on_base(self, overrides: list[str]) -> DictConfig:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
        from omegaconf import open_dict

        key, leaves = self.split(overrides)
        base = self._base(key)
        if base is None:
            raise _Unplaceable("base")
        cfg = copy.deepcopy(base.cfg)
        parsed = [self._override(line) for _, _, line in leaves]
        try:
            ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
        except Exception as exc:
            raise _Unplaceable("apply") from exc
        # What Hydra records of the task's overrides: all of them, in the point's order.
        app = [self._override(line) for line in overrides]
        app = [o for o in app if not o.is_hydra_override()]
        cfg.hydra.overrides.task = [o.input_line for o in app]
        dirname = cfg.hydra.job.config.override_dirname
        with open_dict(cfg.hydra):
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=app, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep,
                exclude_keys=dirname.exclude_keys)
        return cfg

    def _override(self, line: str):
        """Hydra's Override object of a line."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if line not in self._overrides:
            (self._overrides[line],) = OverridesParser.create().parse_overrides([line])
        return self._overrides[line]

    def point(self, index: int, overrides: list[str]) -> SweepPoint:
        """One point, typed, derived and checked; ConfigError lists its problems (Hydra's own
        error when it does not compose)."""
        overrides = list(overrides)
        try:
            key, leaves = self.split(overrides)
            base = self._base(key)
            if base is None:
                raise _Unplaceable("base")
        except _Unplaceable:
            return self._full(index, overrides)
        if not base.fast:
            try:
                cfg = self._compose_on_base(overrides)
            except _Unplaceable:
                return self._full(index, overrides)
            self.counts["medium"] += 1
            return resolve_point(cfg, index, overrides)
        try:
            if base.shares_sections:
                typed = base.typed
                for k, value, _ in leaves:
                    typed = _copy_path(typed, k)
                    _set_path(typed, k, base.convert(k, value))
            else:
                typed = copy.deepcopy(base.typed)
                for k, value, _ in leaves:
                    _set_path(typed, k, base.convert(k, value))
        except (_Unplaceable, AttributeError, KeyError, TypeError):
            return self._full(index, overrides)
        self.counts["fast"] += 1
        if base.plain_outputs:
            return _finish(typed, index, overrides, lambda cfg: _default_outputs(_plain(cfg)))
        return _finish(typed, index, overrides)

    def _full(self, index: int, overrides: list[str]) -> SweepPoint:
        self.counts["full"] += 1
        try:
            cfg = self._load(list(overrides))
        except Exception as exc:  # Hydra: a misspelt key, a group option that does not exist
            raise ConfigError(f"{_label(index, overrides)}: {type(exc).__name__}: {exc}") from None
        return resolve_point(cfg, index, overrides)

    def points(self, job_overrides, initial_index: int = 0,
               check: Callable[[list[SweepPoint]], list[str]] | None = None) -> list[SweepPoint]:
        """Every point of a batch of a sweep, checked (and `check(points)`'s problems, e.g.
        the launcher's): all problems of all points listed at once, nothing returned if any."""
        job_overrides = [list(o) for o in job_overrides]
        self._parse_all([line for o in job_overrides for line in o])
        points, errors = [], []
        for i, overrides in enumerate(job_overrides):
            try:
                points.append(self.point(initial_index + i, overrides))
            except ConfigError as exc:
                errors.append(str(exc))
        if check is not None:
            errors += check(points)
        check_all(points, errors)
        return points


def compose_points(load_config, job_overrides, initial_index: int = 0,
                   is_group: Callable[[str], bool] | None = None,
                   check: Callable[[list[SweepPoint]], list[str]] | None = None
                   ) -> list[SweepPoint]:
    """Every point of a batch of a sweep, checked. `load_config(overrides)` composes one
    through Hydra; `is_group(name)` tells config groups from keys (see PointComposer);
    `check(points)` adds problems of the sweep as a whole."""
    return PointComposer(load_config, is_group).points(job_overrides, initial_index, check)

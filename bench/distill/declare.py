"""Methods declared in a spec (YAML) rather than in code: the same composition as the
presets — sources × loss terms × schedule — written as plain mappings:

    custom_methods:
      - name: seq_kd_48
        description: sequence-level KD on 48 sampled PTs per input
        sources:
          - {origin: teacher_pt, inputs: [labeled, unlabeled], pts: {strategy: sample, k: 48}}
        losses: [{kind: ce}]
      - name: jt_replay
        sources:
          - {origin: teacher_pt, inputs: [labeled, unlabeled], weight: 0.5}
          - {origin: student_pt, inputs: [labeled, unlabeled], weight: 0.5, start: 0.4,
             replay: {capacity: 500, share: 0.5}}
        losses: [{kind: word_kl, temperature: 2.0}]
        schedule: {kind: static}          # or {kind: adaptive_sgo, init_prob: 0.0, ...}

Every key is checked; an error names the method, the field and what is allowed.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any

from bench.distill.methods import METHODS, AutoScale, FieldError, LossTerm, Method, PTSpec, Source, get_method
from bench.distill.schedule import AdaptiveSGO, Alternate, Replay, StaticMix
from bench.spec import short

SCHEDULES = {"static": StaticMix, "adaptive_sgo": AdaptiveSGO, "alternate": Alternate}


@functools.cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _expected(value: Any, hint: Any) -> str | None:
    """None if `value` fits the type `hint`, else what would (in words). Booleans are not
    numbers, and numbers must be finite."""
    if hint is Any:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        wanted = [_expected(value, a) for a in args]
        return None if None in wanted else " or ".join(dict.fromkeys(w for w in wanted if w))
    if hint is type(None):
        return None if value is None else "null"
    if origin is typing.Literal:
        return None if isinstance(value, str) and value in args else f"one of: {', '.join(map(str, args))}"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a finite number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, tuple):
            return "a list"
        wrong = [(x, _expected(x, args[0])) for x in value]
        wrong = [(x, w) for x, w in wrong if w]
        return None if not wrong else f"a list, each {wrong[0][1]} ({short(wrong[0][0])} is not)"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return None if isinstance(value, hint) else "a mapping"
    return None


def _build(cls, data: Any, where: str, convert: dict[str, Any] | None = None):
    """`cls(**data)` with errors that name `where`, the bad key, the value and what is allowed:
    each value is checked against the field's type first (so a typo in a choice, a boolean for a
    number or a NaN fails here, at declaration), then by the class's own `__post_init__`."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {short(data)}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(allowed)}")
    kwargs = dict(data)
    for key, fn in (convert or {}).items():
        if key in kwargs:
            kwargs[key] = fn(kwargs[key], f"{where}.{key}")
    failure: Exception | None = None
    try:
        built = cls(**kwargs)
    except FieldError as err:  # the class's own check, with its field: the most precise message
        raise ValueError(f"{where}.{err.field} = {_shown(err.value)}: {err.problem}") from None
    except (TypeError, ValueError) as err:
        failure = err
    for key, value in kwargs.items():  # what the class does not check itself (a boolean for a number, ...)
        wanted = _expected(value, _hints(cls)[key])
        if wanted:
            raise ValueError(f"{where}.{key} = {_shown(value)}: must be {wanted}")
    if failure is not None:
        raise ValueError(f"{where}: {failure}") from None
    return built


def _shown(value: Any) -> str:
    return short(list(value) if isinstance(value, tuple) else value)


def _source(data: Any, where: str) -> Source:
    return _build(Source, data, where, {
        "inputs": lambda v, w: tuple(v) if isinstance(v, list) else v,
        "pts": lambda v, w: _build(PTSpec, v, w),
        "replay": lambda v, w: None if v is None else _build(Replay, v, w),
    })


def _schedule(data: Any, where: str):
    if not isinstance(data, dict) or data.get("kind") not in SCHEDULES:
        raise ValueError(f"{where}: needs kind, one of {', '.join(SCHEDULES)}; got {short(data)}")
    return _build(SCHEDULES[data["kind"]], {k: v for k, v in data.items() if k != "kind"}, where)


def _auto_scale(data: Any, where: str) -> AutoScale | None:
    """`auto_scale: true` (KD4Gen's defaults), `false`/null, or {batches, floor}."""
    if data is None or data is False:
        return None
    if data is True:
        return AutoScale()
    return _build(AutoScale, data, where)


def _loss(data: Any, where: str) -> LossTerm:
    return _build(LossTerm, data, where, {"sites": lambda v, w: tuple(v) if isinstance(v, list) else v})


def method_from_dict(data: Any, where: str = "custom_methods") -> Method:
    """A `Method` from its YAML form (see the module docstring)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: each custom method is a mapping {{name, sources, losses, ...}}; got {short(data)}")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ValueError(f"{where}: each custom method needs a name (a string); got {short(data.get('name'))}")
    where = f"{where}[{short(data['name'], 40)[1:-1]}]"
    if data["name"] in METHODS:
        raise ValueError(f"{where}: {data['name']!r} is a preset name; choose another")
    for key in ("sources", "losses"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise ValueError(f"{where}.{key}: a non-empty list is required")
    return _build(Method, {"description": "", **data}, where, {
        "sources": lambda v, w: tuple(_source(s, f"{w}[{i}]") for i, s in enumerate(v)),
        "losses": lambda v, w: tuple(_loss(t, f"{w}[{i}]") for i, t in enumerate(v)),
        "schedule": _schedule,
        "auto_scale": _auto_scale,
    })


def resolve_method(name: str, declared: list[dict] | None = None) -> Method:
    """The method called `name`: one declared in the spec, else a preset."""
    for data in declared or []:
        if data.get("name") == name:
            return method_from_dict(data)
    try:
        return get_method(name)
    except KeyError:
        custom = [d.get("name") for d in declared or []]
        raise KeyError(f"unknown method {short(name)}; allowed: {', '.join([*METHODS, *custom])}") from None


def method_to_dict(method: Method) -> dict[str, Any]:
    """A method in its YAML form (the inverse of `method_from_dict`, name and all)."""
    def plain(obj):
        if dataclasses.is_dataclass(obj):
            out = {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
            if isinstance(obj, tuple(SCHEDULES.values())):
                out = {"kind": next(k for k, c in SCHEDULES.items() if isinstance(obj, c)), **out}
            return out
        if isinstance(obj, tuple):
            return [plain(x) for x in obj]
        return obj

    return plain(method)


def with_overrides(method: Method, overrides: dict[str, Any], name: str | None = None) -> Method:
    """`method` with dotted-path fields replaced (`losses.0.temperature`, `sources.1.start`,
    `sources.0.pts.k`, `schedule.every`, ...): how a search varies a method. Every path is
    checked, and the result is validated like a declared method."""
    data = method_to_dict(method)
    for path, value in overrides.items():
        node, parts = data, path.split(".")
        for i, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: i + 1]), method.name)
        last = parts[-1]
        if isinstance(node, list):
            node[_index(node, last, path, method.name)] = value
        elif isinstance(node, dict) and last in node:
            node[last] = value
        else:
            raise ValueError(f"method {method.name!r} has no field {path!r}")
    data["name"] = name or method.name
    return method_from_definition(data, f"method {method.name!r} with {overrides}")


def method_from_definition(data: dict[str, Any], where: str = "method") -> Method:
    """A method from its full YAML form (`method_to_dict`), presets' names allowed: how a
    trial's exact method travels to its workers."""
    return _build(Method, dict(data), where, {
        "sources": lambda v, w: tuple(_source(x, f"{w}.sources[{i}]") for i, x in enumerate(v)),
        "losses": lambda v, w: tuple(_loss(x, f"{w}.losses[{i}]") for i, x in enumerate(v)),
        "schedule": _schedule,
        "auto_scale": _auto_scale,
    })


def _index(node: list, part: str, path: str, method: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ValueError(f"method {method!r} has no field {path!r} (index {part} of a list of {len(node)})")
    return int(part)


def _child(node, part: str, path: str, method: str):
    if isinstance(node, list):
        return node[_index(node, part, path, method)]
    if isinstance(node, dict) and isinstance(node.get(part), (dict, list)):
        return node[part]
    raise ValueError(f"method {method!r} has no field {path!r}")

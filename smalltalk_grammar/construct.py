"""Model objects built from data the parser produced itself, without validating it again.

Every method of a project becomes a MethodDef with two Ranges of two Positions each: seven
pydantic objects per method. Validating nested dicts into them, and assigning a SourceFile's
fields one by one through pydantic's `__setattr__`, was a large part of parsing after
tree-sitter itself; pydantic's `model_construct` is a Python loop over the fields and slower
than validation. So the objects are assembled directly, setting exactly the four slots
validation sets. For a Range that costs about what validation costs; the gain is in MethodDef
(no nested dicts to walk, and one fields set shared by all instead of one each: MethodDef is
always built with every field, Position and Range are frozen, so `__setattr__` can only add
names already in it) and in building each SourceFile once.

The data must already have the model's types (it comes from the parser, never from outside).
At import the direct path is checked against validation on a sample; if a pydantic version
ever disagrees, validation is used instead.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from smalltalk_grammar.model import ClassDef, MethodDef, Position, Range, SourceFile

log = logging.getLogger(__name__)

_new = object.__new__
# The setters of BaseModel's four slots, called directly (cheaper than object.__setattr__).
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_POSITION_FIELDS = set(Position.model_fields)
_RANGE_FIELDS = set(Range.model_fields)
_METHOD_FIELDS = set(MethodDef.model_fields)


def _defaults(model: type[Any]) -> list[tuple[str, Any, bool]]:
    """(name, default, whether the default is a factory) of each field, in order."""
    return [
        (name, info.default_factory or info.default, info.default_factory is not None)
        for name, info in model.model_fields.items()
    ]


_CLASS_FIELDS = _defaults(ClassDef)
_FILE_FIELDS = _defaults(SourceFile)


def _position(line: int, character: int) -> Position:
    p = _new(Position)
    _set_dict(p, {"line": line, "character": character})
    _set_fields(p, _POSITION_FIELDS)
    _set_extra(p, None)
    _set_private(p, None)
    return p


def _range(start_line: int, start_char: int, end_line: int, end_char: int) -> Range:
    # _position inlined twice: this runs twice for every method.
    start = _new(Position)
    _set_dict(start, {"line": start_line, "character": start_char})
    _set_fields(start, _POSITION_FIELDS)
    _set_extra(start, None)
    _set_private(start, None)
    end = _new(Position)
    _set_dict(end, {"line": end_line, "character": end_char})
    _set_fields(end, _POSITION_FIELDS)
    _set_extra(end, None)
    _set_private(end, None)
    r = _new(Range)
    _set_dict(r, {"start": start, "end": end})
    _set_fields(r, _RANGE_FIELDS)
    _set_extra(r, None)
    _set_private(r, None)
    return r


def _method(values: dict[str, Any]) -> MethodDef:
    """`values`: every MethodDef field by name (`class_name`, not the alias), in field order."""
    m = _new(MethodDef)
    _set_dict(m, values)
    _set_fields(m, _METHOD_FIELDS)
    _set_extra(m, None)
    _set_private(m, None)
    return m


def _class(values: dict[str, Any]) -> ClassDef:
    """`values`: the ClassDef fields given, by name; the others get their defaults."""
    full = {
        name: values[name] if name in values else default() if factory else default
        for name, default, factory in _CLASS_FIELDS
    }
    c = _new(ClassDef)
    _set_dict(c, full)
    _set_fields(c, set(values))
    _set_extra(c, None)
    _set_private(c, None)
    return c


def _source_file(values: dict[str, Any], fields_set: set[str] | None = None) -> SourceFile:
    """`values`: SourceFile fields by name, the others get their defaults; `fields_set`: the
    fields counted as set (default: those in `values`). The lists of methods and classes are
    taken as they are (their items are built already)."""
    full = {
        name: values[name] if name in values else default() if factory else default
        for name, default, factory in _FILE_FIELDS
    }
    f = _new(SourceFile)
    _set_dict(f, full)
    _set_fields(f, set(values) if fields_set is None else fields_set)
    _set_extra(f, None)
    _set_private(f, None)
    return f


def _validated_position(line: int, character: int) -> Position:
    return Position.model_validate({"line": line, "character": character})


def _validated_range(start_line: int, start_char: int, end_line: int, end_char: int) -> Range:
    return Range.model_validate(
        {
            "start": {"line": start_line, "character": start_char},
            "end": {"line": end_line, "character": end_char},
        }
    )


def _validated_method(values: dict[str, Any]) -> MethodDef:
    return MethodDef.model_validate(values)


def _validated_class(values: dict[str, Any]) -> ClassDef:
    return ClassDef.model_validate(values)


def _validated_source_file(
    values: dict[str, Any], fields_set: set[str] | None = None
) -> SourceFile:
    # Validate only the plain fields; the built items are put in afterwards, unvalidated.
    items = {k: values[k] for k in ("classes", "methods", "diagnostics", "doits") if k in values}
    plain = {k: v for k, v in values.items() if k not in items}
    result = SourceFile.model_validate(plain)
    for key, value in items.items():
        setattr(result, key, value)
    if fields_set is not None:
        result.__pydantic_fields_set__ = fields_set
    return result


def _same(a: Any, b: Any) -> bool:
    return (
        type(a) is type(b)
        and a == b
        and a.model_dump() == b.model_dump()
        and list(a.__dict__) == list(b.__dict__)
        and a.model_fields_set == b.model_fields_set
        and a.__pydantic_extra__ == b.__pydantic_extra__
        and a.__pydantic_private__ == b.__pydantic_private__
    )


def _agrees() -> bool:
    """The direct path builds what validation builds, for this pydantic version."""
    try:
        rng = _range(1, 2, 3, 4)
        method = {
            "class_name": "Foo",
            "side": "class",
            "selector": "at:put:",
            "keywords": ["at:", "put:"],
            "category": None,
            "comment": "c",
            "source": "at: i put: v ^ v",
            "range": rng,
            "selector_range": _range(1, 2, 1, 9),
            "start_offset": 5,
            "end_offset": 30,
            "sends": ["x"],
            "symbols": [],
            "class_references": ["Bar"],
            "variable_references": [],
            "arguments": ["i", "v"],
            "temporaries": [],
        }
        cls = {
            "name": "Foo",
            "superclass": "Object",
            "range": rng,
            "name_range": rng,
            "traits": None,
        }
        return (
            _same(_position(7, 8), _validated_position(7, 8))
            and _same(rng, _validated_range(1, 2, 3, 4))
            and _same(_method(dict(method)), MethodDef.model_validate(method))
            and _same(_class(cls), ClassDef.model_validate(cls))
            and set(MethodDef.model_fields) == set(method)
        )
    except Exception:  # any surprise from pydantic's internals: validate instead
        log.exception("direct model construction failed its check")
        return False


if _agrees():
    make_position, make_range, make_method_def, make_class_def, make_source_file = (
        _position,
        _range,
        _method,
        _class,
        _source_file,
    )
else:  # pragma: no cover - only with a pydantic whose internals changed
    log.warning("pydantic internals differ from what construct.py expects; validating instead")
    make_position, make_range, make_method_def, make_class_def, make_source_file = (
        _validated_position,
        _validated_range,
        _validated_method,
        _validated_class,
        _validated_source_file,
    )

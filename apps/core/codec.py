"""JSON for cached values: nothing read from Redis is unpickled, and what the app caches reads back exactly.

A pickle read from Redis runs whatever code its writer chose, so anyone able to
write one key would run code in every process. This codec writes plain JSON;
values JSON lacks are tagged objects (`{"$t": "decimal", "v": "10.50"}`) that
decode only into a fixed set of types: Decimal, datetime (naive or fixed
offset), date, timedelta, ObjectId, tuple, dicts with non-string keys,
dataclasses registered with `@cacheable`, and model instances. Anything else
fails when it is written (TypeError), never when it is read.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

from bson import ObjectId
from django.apps import apps
from django.db import models

TAG = "$t"
_DATACLASSES: dict[str, type] = {}
C = TypeVar("C", bound=type)


class CodecError(ValueError):
    """Bytes that are not a value this codec wrote."""


def cacheable(cls: C) -> C:
    """Register a dataclass whose instances may be cached (decoding builds only registered classes)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__qualname__} is not a dataclass")
    _DATACLASSES[_class_name(cls)] = cls
    return cls


def dumps(value: Any) -> bytes:
    return json.dumps(_encode(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def loads(raw: bytes) -> Any:
    try:
        return _decode(json.loads(raw))
    except (ValueError, TypeError, KeyError, LookupError) as error:
        raise CodecError(str(error)) from error


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _tagged(tag: str, value: Any) -> dict[str, Any]:
    return {TAG: tag, "v": value}


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _tagged("float", repr(value))
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and TAG not in value:
            return {key: _encode(item) for key, item in value.items()}
        return _tagged("dict", [[_encode(key), _encode(item)] for key, item in value.items()])
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        return encoder(value)
    if isinstance(value, models.Model):
        return _encode_model(value)
    if dataclasses.is_dataclass(value) and _DATACLASSES.get(_class_name(type(value))) is type(value):
        fields = {field.name: _encode(getattr(value, field.name)) for field in dataclasses.fields(value)}
        return {TAG: "dataclass", "c": _class_name(type(value)), "v": fields}
    raise TypeError(f"cannot cache a {type(value).__qualname__}: not a JSON value or a registered type")


def _encode_datetime(value: datetime) -> dict[str, Any]:
    if value.tzinfo is not None and not isinstance(value.tzinfo, timezone):
        raise TypeError(f"cannot cache a datetime in {value.tzinfo!r}: use UTC or a fixed offset")
    return _tagged("datetime", [value.isoformat(), value.fold])  # fold: which of a repeated wall-clock hour


def _encode_model(instance: models.Model) -> dict[str, Any]:
    deferred = instance.get_deferred_fields()
    fields = {
        field.attname: _encode(getattr(instance, field.attname))
        for field in instance._meta.concrete_fields
        if field.attname not in deferred
    }
    return {TAG: "model", "m": instance._meta.label, "v": fields}


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    Decimal: lambda value: _tagged("decimal", str(value)),
    datetime: _encode_datetime,
    date: lambda value: _tagged("date", value.isoformat()),
    timedelta: lambda value: _tagged("timedelta", [value.days, value.seconds, value.microseconds]),
    ObjectId: lambda value: _tagged("oid", str(value)),
    tuple: lambda value: _tagged("tuple", [_encode(item) for item in value]),
}


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if TAG not in value:
        return {key: _decode(item) for key, item in value.items()}
    return _DECODERS[value[TAG]](value)


def _decode_dataclass(value: dict[str, Any]) -> Any:
    cls = _DATACLASSES[value["c"]]  # KeyError: not a registered class
    return cls(**{name: _decode(item) for name, item in value["v"].items()})


def _decode_model(value: dict[str, Any]) -> models.Model:
    model = apps.get_model(value["m"])  # LookupError: not an installed model
    names = list(value["v"])
    known = {field.attname for field in model._meta.concrete_fields}
    if not set(names) <= known:
        raise KeyError(f"{value['m']} has no field(s) {sorted(set(names) - known)}")
    return model.from_db("default", names, [_decode(value["v"][name]) for name in names])


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "float": lambda value: float(value["v"]),
    "decimal": lambda value: Decimal(value["v"]),
    "datetime": lambda value: datetime.fromisoformat(value["v"][0]).replace(fold=value["v"][1]),
    "date": lambda value: date.fromisoformat(value["v"]),
    "timedelta": lambda value: timedelta(*value["v"]),
    "oid": lambda value: ObjectId(value["v"]),
    "tuple": lambda value: tuple(_decode(item) for item in value["v"]),
    "dict": lambda value: {_decode(key): _decode(item) for key, item in value["v"]},
    "dataclass": _decode_dataclass,
    "model": _decode_model,
}

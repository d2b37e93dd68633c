"""The orjson codec, registered with Faust under the name ``orjson``."""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers import codecs

ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class OrjsonCodec(codecs.Codec):
    """JSON via orjson: fast, strict (NaN and Infinity are refused on decode)."""

    def _dumps(self, obj: Any) -> bytes:
        return dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


def _default(obj: Any) -> Any:
    as_dict = getattr(obj, "asdict", None)
    if as_dict is not None:
        return as_dict()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(obj: Any) -> bytes:
    """Serialise ``obj`` (nested Faust records included) to JSON bytes."""
    return orjson.dumps(obj, default=_default, option=ORJSON_OPTIONS)


codecs.register("orjson", OrjsonCodec())

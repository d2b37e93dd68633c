"""Typed values inside a checkpoint document: numpy arrays, bytes, non-finite floats, pickles.

The document is plain JSON (orjson). What JSON cannot say is tagged:

* a numpy array: ``{"nd": [dtype, shape, base64 of its C-order bytes]}``; only ``<f8``,
  ``<i8`` and ``|b1`` are read back, and the byte count must match the shape;
* bytes: ``{"b64": "..."}``;
* a float that may be NaN or infinite (orjson would write ``null``): :func:`fl` writes it as a
  string;
* an online model that only pickles (River): :func:`pickled` / :func:`unpickle`. The pickle sits
  in the HMAC-authenticated body (:mod:`agents.state.envelope`), and on top of that is read with
  an allowlist of the classes a model bundle is made of, so even a blob sealed with a leaked
  secret cannot name ``os.system``.

>>> import numpy as np
>>> doc = orjson.loads(orjson.dumps({"a": np.arange(3.0)}, default=default))
>>> array(doc["a"]).tolist()
[0.0, 1.0, 2.0]
>>> unfl(orjson.loads(orjson.dumps(fl(float("nan"))))) != unfl(fl(1.0))
True
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import pickle
from typing import Any

import numpy as np
import orjson

_DTYPES = {"<f8": np.float64, "<i8": np.int64, "|b1": np.bool_}


def default(obj: Any) -> Any:
    """orjson ``default``: arrays, bytes and numpy scalars."""
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        if arr.dtype.str not in _DTYPES:
            raise TypeError(f"array of dtype {arr.dtype} is not checkpointable")
        return {"nd": [arr.dtype.str, list(arr.shape), base64.b64encode(arr.tobytes()).decode("ascii")]}
    if isinstance(obj, bytes | bytearray):
        return {"b64": base64.b64encode(obj).decode("ascii")}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not checkpointable")


def array(node: Any, dtype: str | None = None) -> np.ndarray:
    """Read back an array written by :func:`default` (a fresh, writable copy)."""
    kind, shape, text = node["nd"]
    if kind not in _DTYPES or (dtype is not None and kind != dtype):
        raise ValueError(f"array dtype {kind!r} not accepted here")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError("bad array shape")
    raw = base64.b64decode(text, validate=True)
    count = math.prod(shape)
    if len(raw) != count * np.dtype(_DTYPES[kind]).itemsize:
        raise ValueError("array byte count does not match its shape")
    return np.frombuffer(raw, dtype=_DTYPES[kind]).reshape(shape).copy()


def optional_array(node: Any, dtype: str | None = None) -> np.ndarray | None:
    return None if node is None else array(node, dtype)


def raw_bytes(node: Any) -> bytes:
    try:
        return base64.b64decode(node["b64"], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64: {exc}") from None


def fl(x: float | None) -> float | str | None:
    """A float JSON can carry whatever its value (NaN and infinities as strings)."""
    if x is None or math.isfinite(x):
        return x
    return repr(float(x))


def unfl(node: Any) -> float | None:
    if node is None:
        return None
    if isinstance(node, str):
        if node not in ("nan", "inf", "-inf"):
            raise ValueError(f"bad float {node!r}")
        return float(node)
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise ValueError(f"not a number: {type(node).__name__}")
    return float(node)


def plain(value: Any) -> Any:
    """JSON-shaped copy of a snapshot-like value (arrays become lists, as on the output topics)."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))


# ---- pickles of online models --------------------------------------------------------------------
_ALLOWED_MODULE_PREFIXES = ("agents.anomaly.", "river.")
_ALLOWED_GLOBALS = {
    ("builtins", name) for name in (
        "float", "int", "complex", "bool", "str", "bytes", "bytearray", "list", "dict", "set",
        "frozenset", "tuple", "slice", "range", "object")
} | {
    ("collections", name) for name in ("Counter", "OrderedDict", "defaultdict", "deque")
} | {
    ("functools", "partial"), ("copyreg", "_reconstructor"), ("random", "Random"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"), ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"), ("numpy.random._pickle", "__randomstate_ctor"),
}


class _ModelUnpickler(pickle.Unpickler):
    """Resolves only the classes online models are made of."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS or module.startswith(_ALLOWED_MODULE_PREFIXES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a model checkpoint")


def pickled(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=5)


def unpickle_model(data: bytes) -> Any:
    """Unpickle authenticated model bytes with the class allowlist (call only after a MAC verified)."""
    return _ModelUnpickler(io.BytesIO(data)).load()


def unpickle(node: Any) -> Any:
    """Unpickle a model from an authenticated body, with the class allowlist."""
    return _ModelUnpickler(io.BytesIO(raw_bytes(node))).load()

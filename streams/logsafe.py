"""No secret in any log line: a log-record factory that masks credentials before any handler runs.

Installed once per process (:func:`install`, from ``streams.app``). Every record's rendered
message, and its exception text, has

* every registered secret value (API tokens, notification channel credentials, worker
  secrets: :func:`register_secrets`) replaced by ``***``;
* the value of any ``Authorization`` / ``Proxy-Authorization`` header (``Name: value``,
  ``'Name': 'value'`` as in a repr of headers) and any ``Bearer``/``Basic`` credential
  replaced by ``***``.

It works on records as they are created, so it covers every logger (ours, aiohttp's, Faust's)
whatever handlers the worker later configures.

>>> mask("GET failed: {'Authorization': 'Bearer abc.def', 'Accept': '*/*'}")
"GET failed: {'Authorization': '***', 'Accept': '*/*'}"
>>> mask("Authorization: Basic QUM6eHl6") == "Authorization: ***"
True
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

MASK = "***"
_MIN_LEN = 4  # shorter values would mask ordinary words
_HEADER_RE = re.compile(
    r"""(?P<name>(?:proxy-)?authorization)(?P<sep>['"]?\s*[:=,]\s*(?:\(\s*)?['"]?)"""
    r"""(?P<value>[^'"\r\n)}\]]+)""",
    re.IGNORECASE,
)
_SCHEME_RE = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+(?P<value>[A-Za-z0-9._~+/=-]{4,})", re.IGNORECASE)

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
_previous: Callable[..., logging.LogRecord] | None = None


def register_secrets(values: Iterable[str | None]) -> None:
    """Add secret values (plain strings) to mask in every later log record."""
    global _secrets
    fresh = {v for v in values if v and len(v) >= _MIN_LEN}
    with _lock:
        _secrets = tuple(sorted(set(_secrets) | fresh, key=len, reverse=True))


def mask(text: str) -> str:
    """``text`` with registered secrets and authorization credentials replaced by ``***``."""
    for value in _secrets:
        if value in text:
            text = text.replace(value, MASK)
    text = _HEADER_RE.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
    return _SCHEME_RE.sub(lambda m: MASK, text)


def _mask_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string is logging's own error to report
        return
    masked = mask(message)
    if masked != message:
        record.msg, record.args = masked, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = mask(record.exc_text)
    if record.stack_info:
        record.stack_info = mask(record.stack_info)


def install() -> None:
    """Wrap the process's log-record factory so every record is masked at creation; idempotent."""
    global _previous
    with _lock:
        if _previous is not None:
            return
        previous = _previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _mask_record(record)
        return record

    logging.setLogRecordFactory(factory)


def uninstall() -> None:
    """Put back the factory :func:`install` wrapped (for tests)."""
    global _previous
    with _lock:
        if _previous is not None:
            logging.setLogRecordFactory(_previous)
            _previous = None

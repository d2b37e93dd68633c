"""Model checkpoints by part: what to checkpoint, when, how to restore, what to skip (pure core).

Parts and keys (the record key on the compacted ``risk.models`` topic):

* ``ticks`` — the market-wide tick models (:meth:`ModelBundle.tick_state`). Every worker
  reads every tick, so this part is the same on every worker.
* ``portfolio:<name>`` — one portfolio's :class:`~agents.anomaly.models.PortfolioModels`
  (snapshot anomaly scorer, alert forecaster, VaR forecaster), written by the worker
  that owns the portfolio.

Value (:class:`Checkpoint`): ``CHECKPOINT_MAGIC + state version (uint16 BE) + as_of_ms
(int64 BE) + tag (32 bytes) + zlib(pickle(part))`` where ``tag`` is HMAC-SHA256, keyed by
the worker secret (``MEVRISK_CHECKPOINT_SECRET``), over the record key, the header and the
payload. Anyone who can produce to the cluster can write ``risk.models``, so nothing is
decompressed or unpickled before the tag verifies; the payload then inflates to at most
:data:`MAX_PART_BYTES` and unpickles only the classes models are made of
(``agents.state.codec``). A value of another :data:`~agents.anomaly.models.STATE_VERSION`,
a forged, foreign, oversized or corrupt value raises
:class:`~agents.anomaly.errors.ModelStateError` and that part starts cold (the caller logs
the reason and counts it).

When: at bar boundaries, in event time. The pipeline calls
:meth:`ModelCheckpointer.on_bar` at the start of each bar close ``B``, before the
models see the watermark ``B`` or the bar's snapshots, so the state then includes
exactly the events with event time ``< B``: the checkpoint says ``as_of_ms = B - 1``.
A part is due when ``B`` crosses a multiple of ``interval_ms`` shifted by the part's
phase (``crc32(key) % interval_ms``; 0 for ``ticks``), so portfolios spread their
pickling over the bars of an interval instead of all pickling at once. While the
pipeline catches up (a replay: the bar is more than two intervals behind the newest
event time offered, ``head_ms``) no checkpoint is taken: every part is due once in the
last two intervals before the head, and which bars get one never changes an output.

Restore (:func:`restore`, before the replay): the last record of each key is installed
with its ``as_of_ms`` (:meth:`ModelBundle.install_ticks` / ``install_portfolio``). From then
on, events with event time ``<= as_of_ms`` do not update that part:

* ticks are scored without learning;
* replayed snapshots at or before ``as_of_ms`` (published before the crash; the host
  does not publish them again) get a score-only block from the restored models, which
  is what the rules see during the replay; it may differ from the block published then
  (the restored models already learned up to ``as_of_ms``), and the part's counters,
  recent rates and ``last`` prediction are left as checkpointed;
* alerts and watermarks at or before ``as_of_ms`` are ignored by that part.

Events after ``as_of_ms`` update the models as in an uninterrupted run, so the scores
after a restart equal those of an uninterrupted run provided that (1) the replay
re-offers every event after ``as_of_ms`` (the market replay window
``MEVRISK_MARKET_REPLAY_MESSAGES`` must reach back past the last checkpoint), (2) the
snapshots the risk core rebuilds after ``as_of_ms`` are the same (its windows are
refilled by the replay), and (3) no event older than the watermark arrived late
between the checkpoint and the crash (a late event is applied when it arrives, which
a replay cannot reproduce). No checkpoint is written for a part whose restored
``as_of_ms`` is not before the bar (its state would be newer than the label).
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.anomaly.errors import ModelStateError
from agents.anomaly.models import STATE_VERSION, ModelBundle, PortfolioModels

TICKS_KEY = "ticks"
PORTFOLIO_PREFIX = "portfolio:"
CHECKPOINT_MAGIC = b"MEVRISK-CKPT2\x00"
"""``2``: signed (the unsigned ``MEVRISK-CKPT`` values of earlier builds are refused)."""
_ENVELOPE = struct.Struct(">Hq")
_TAG_BYTES = 32
_HEAD = len(CHECKPOINT_MAGIC) + _ENVELOPE.size + _TAG_BYTES
MAX_PART_BYTES = 32 * 1024 * 1024
"""A part inflates to at most 32 MiB (a zlib bomb is refused, never inflated past this)."""
MIN_SECRET_BYTES = 16


def _tag(secret: bytes, key: str, header: bytes, payload: bytes) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ModelStateError(f"the checkpoint secret must be at least {MIN_SECRET_BYTES} bytes")
    return hmac.new(secret, key.encode() + b"\x00" + header + payload, hashlib.sha256).digest()


def portfolio_key(name: str) -> str:
    """
    >>> portfolio_key("desk-1")
    'portfolio:desk-1'
    """
    return PORTFOLIO_PREFIX + name


@dataclass(frozen=True)
class Checkpoint:
    """One part's checkpoint: its key, the event time it includes everything up to, its state."""

    key: str
    as_of_ms: int
    payload: bytes
    """``zlib(pickle(part))``."""
    state_version: int = STATE_VERSION

    @classmethod
    def take(cls, key: str, part: Any, as_of_ms: int) -> Checkpoint:
        return cls(key, as_of_ms, zlib.compress(pickle.dumps(part, protocol=5), 1))

    def to_bytes(self, secret: bytes) -> bytes:
        header = CHECKPOINT_MAGIC + _ENVELOPE.pack(self.state_version, self.as_of_ms)
        return header + _tag(secret, self.key, header, self.payload) + self.payload

    @classmethod
    def from_bytes(cls, key: str, data: bytes | None, secret: bytes) -> Checkpoint:
        """Verify and read the envelope; raises ``ModelStateError`` for a forged or foreign value or
        another version. Nothing is decompressed or unpickled here.

        >>> secret = b"a-test-secret-of-16+"
        >>> ck = Checkpoint.take("ticks", {"a": 1}, 999)
        >>> Checkpoint.from_bytes("ticks", ck.to_bytes(secret), secret).as_of_ms
        999
        >>> Checkpoint.from_bytes("portfolio:x", ck.to_bytes(secret), secret)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        agents.anomaly.errors.ModelStateError: model checkpoint 'portfolio:x' is forged or altered ...
        """
        if not data or not data.startswith(CHECKPOINT_MAGIC) or len(data) < _HEAD:
            raise ModelStateError(f"model checkpoint {key!r} is not a MEV Risk Stream checkpoint (bad magic)")
        header_end = len(CHECKPOINT_MAGIC) + _ENVELOPE.size
        header, tag, payload = data[:header_end], data[header_end:_HEAD], data[_HEAD:]
        if not hmac.compare_digest(tag, _tag(secret, key, header, payload)):
            raise ModelStateError(f"model checkpoint {key!r} is forged or altered (its tag does not verify "
                                  "with this worker's secret)")
        version, as_of_ms = _ENVELOPE.unpack_from(data, len(CHECKPOINT_MAGIC))
        if version != STATE_VERSION:
            raise ModelStateError(
                f"model checkpoint {key!r} has state version {version}, this build reads version "
                f"{STATE_VERSION}; refusing it, the part starts cold"
            )
        return cls(key, as_of_ms, payload, version)

    def load(self) -> Any:
        """Inflate (at most ``MAX_PART_BYTES``) and unpickle with the model class allowlist; only for a
        checkpoint that ``from_bytes`` verified."""
        from agents.state.codec import unpickle_model

        try:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(self.payload, MAX_PART_BYTES)
            if inflater.unconsumed_tail or not inflater.eof:
                raise ModelStateError(f"model checkpoint {self.key!r} inflates past {MAX_PART_BYTES} bytes "
                                      "or is truncated")
            return unpickle_model(raw)
        except ModelStateError:
            raise
        except Exception as exc:  # corrupt payload: one clear error type
            raise ModelStateError(f"model checkpoint {self.key!r} is corrupt: {exc!r}") from exc


def phase_ms(key: str, interval_ms: int) -> int:
    """Offset of a part's checkpoint times within the interval (stable across processes)."""
    return 0 if key == TICKS_KEY else zlib.crc32(key.encode()) % interval_ms


def is_due(key: str, bar_end_ms: int, bar_ms: int, interval_ms: int) -> bool:
    """True when the bar ``(bar_end_ms - bar_ms, bar_end_ms]`` crosses the part's next checkpoint time.

    >>> [b for b in range(1000, 11000, 1000) if is_due("ticks", b, 1000, 5000)]
    [5000, 10000]
    """
    if interval_ms <= 0:
        return False
    phase = phase_ms(key, interval_ms)
    return (bar_end_ms - phase) // interval_ms > (bar_end_ms - bar_ms - phase) // interval_ms


@dataclass
class ModelCheckpointer:
    """Takes the due checkpoints at bar boundaries; the host drains and publishes them."""

    interval_ms: int
    pending: list[Checkpoint] = field(default_factory=list)
    taken: int = 0

    def on_bar(self, bundle: ModelBundle, bar_end_ms: int, bar_ms: int, head_ms: int | None = None) -> None:
        """Called before the models see bar ``bar_end_ms``: they hold every event ``< bar_end_ms``.

        ``head_ms``: the newest event time offered so far (None: not catching up).
        """
        if head_ms is not None and head_ms - bar_end_ms > 2 * self.interval_ms:
            return  # catching up: each part is due again before the head
        as_of = bar_end_ms - 1
        restored_ticks = bundle.ticks_as_of_ms
        if is_due(TICKS_KEY, bar_end_ms, bar_ms, self.interval_ms) and (
            restored_ticks is None or as_of > restored_ticks
        ):
            self.pending.append(Checkpoint.take(TICKS_KEY, bundle.tick_state(), as_of))
        for name, models in bundle.portfolios.items():
            key = portfolio_key(name)
            if is_due(key, bar_end_ms, bar_ms, self.interval_ms) and not models.covers(as_of):
                self.pending.append(Checkpoint.take(key, models, as_of))

    def drain(self) -> list[Checkpoint]:
        out, self.pending = self.pending, []
        self.taken += len(out)
        return out


@dataclass
class RestoreReport:
    """What :func:`restore` installed (key -> as_of_ms) and refused (key -> reason)."""

    restored: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        ticks = self.restored.get(TICKS_KEY)
        n_portfolios = sum(1 for k in self.restored if k.startswith(PORTFOLIO_PREFIX))
        return (f"restored ticks as_of_ms={ticks} and {n_portfolios} portfolio(s); "
                f"refused {len(self.refused)}")


def restore(bundle: ModelBundle, records: Iterable[tuple[str, bytes | None]], secret: bytes) -> RestoreReport:
    """Install the newest verified checkpoint of each key into ``bundle`` (no event seen yet).

    A forged record does not shadow the genuine one before it (the newest that verifies wins); a
    part with no acceptable record (forged, wrong version, foreign, corrupt, unknown key) stays
    cold and is reported.
    """
    report = RestoreReport()
    history: dict[str, list[bytes | None]] = {}
    for key, raw in records:
        history.setdefault(key, []).append(raw)
    for key, values in history.items():
        if values[-1] is None:
            continue  # a tombstone: the part was deleted
        for raw in reversed(values):
            if raw is None:
                break
            as_of = _install(bundle, key, raw, secret, report)
            if as_of is not None:
                report.restored[key] = as_of
                report.refused.pop(key, None)
                break
    return report


def _install(bundle: ModelBundle, key: str, raw: bytes, secret: bytes, report: RestoreReport) -> int | None:
    """Install one record; its ``as_of_ms``, or None with the reason in ``report.refused``."""
    try:
        checkpoint = Checkpoint.from_bytes(key, raw, secret)
        if key == TICKS_KEY:
            bundle.install_ticks(checkpoint.load(), checkpoint.as_of_ms)
        elif key.startswith(PORTFOLIO_PREFIX):
            part = checkpoint.load()
            if not isinstance(part, PortfolioModels):
                raise ModelStateError(f"model checkpoint {key!r} holds {type(part).__name__}")
            bundle.install_portfolio(key[len(PORTFOLIO_PREFIX):], part, checkpoint.as_of_ms)
        else:
            raise ModelStateError(f"unknown model checkpoint key {key!r}")
    except ModelStateError as exc:
        report.refused.setdefault(key, str(exc))
        return None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a pickle of the wrong shape
        report.refused.setdefault(key, f"model checkpoint {key!r} does not fit this build: {exc!r}")
        return None
    return checkpoint.as_of_ms

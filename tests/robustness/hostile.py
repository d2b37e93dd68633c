"""Hostile input for the input topics, shared by the robustness tests and ``benchmarks/bench_soak.py``.

Every generator returns :class:`Hostile` messages: the raw value bytes a bot could publish, the
topic and key, a label, and what the engine must do with it:

* ``must_reject``: the message breaks its contract or a bound of issue 11 (far-future or pre-floor
  event time, a price or quantity beyond any cap, a name with control characters or over any
  length limit, a malformed or non-object value). It must come back as a
  ``schemas.contracts.ContractError`` whose reason is in ``DLQ_REASONS``, or as a ``risk.dlq``
  output of the pipeline, never as an exception or a state change.
* otherwise the engine may accept it (or reject it with a reason).
* ``touches_valid``: accepting it could legitimately change what the simulator's own portfolios
  publish (a plausible tick of a known asset moves the market, a re-delivered position of a
  simulator portfolio is counted as a duplicate in its snapshot, an unknown asset admitted up to
  a cap joins the asset index every snapshot reports). Equality checks against the valid stream
  replayed alone use only ``neutral`` generation, where no message both touches the simulator's
  entities and may be accepted.

Two front ends over the same generators: :func:`hostile_batches` (Hypothesis strategies, shrinkable)
and :class:`HostileFeed` (``random.Random(seed)``, for live use), plus :func:`crafted` (the cases of
``/work/shared/measure/adversarial_live.py`` that broke main, issue 11).
"""

from __future__ import annotations

import dataclasses
import random
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson

TICKS = "mev.market.ticks"
POSITIONS = "mev.positions"
STATS = "mev.strategy.stats"
INPUT_TOPICS = (TICKS, POSITIONS, STATS)

T = TypeVar("T")

DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS
FAR_PAST_MS = (0, 1, 1_000_000_000, 1_000_000_000_000)
"""Event times before any sensible floor (1970 .. 2001): must be rejected."""
NEAR_OFFSETS_MS = (0, 0, 1, -1, -499, -2_500, -60_000, -DAY_MS, 1_500, 30_000)
"""Offsets from the stream's event time a hostile but in-range message may carry (late or a bit ahead)."""
BIG_STRING = "x" * 200_000
"""A 200 kB identifier: under the 1 MiB message limit, over any identifier length limit."""

EXTREME_FLOATS = (
    1e308, 1.7976931348623157e308, -1.7976931348623157e308, 1e300, -1e300,
    5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, -0.0, 0.0,
)
EXTREME_INTS = (2**63, 2**63 - 1, -(2**63), 2**64 - 1, 2**53 + 1, -1)
HUGE = 1e18
"""Magnitudes at or above this are beyond any quantity, notional or price cap."""

CONTROL_IDS = (
    "price-oracle\u0000\n", "ETH\u202e", "a\u001b[31mred", "\u0000", "tab\tname", "zero\u200bwidth",
    "bell\u0007", "del\u007f", "line\u2028sep", "bom\ufeff", BIG_STRING, "y" * 5_000,
)
"""Identifiers that break any character set or length limit: must be rejected."""
ODD_BUT_PRINTABLE_IDS = (
    "ünïcödé", "名前", "🦄", "a b", "z" * 100, "DROP TABLE x;", "../../etc/passwd", "${jndi:ldap://x/a}",
    "<script>", "%s%n", "NaN", "null", "0", "-", ".", "Ё", "ETH ", "eth",
)
"""Identifiers a charset may or may not allow: fine as names of hostile entities only."""
WRONG_TYPED_NUMBERS = ("1", "", [], {}, [1], True, False, {"$gt": 0}, "NaN", "1e308", [[[]]])
WRONG_TYPED_STRINGS = (1, 1.5, True, [], {}, ["x"], {"a": "b"}, 0)

SIM_PRICES = {"ETH": 3_000.0, "WBTC": 60_000.0, "USDC": 1.0, "USDT": 1.0, "DAI": 1.0, "LINK": 15.0,
              "UNI": 8.0, "ARB": 1.0}
SIM_POOLS = {"ETH": "uniswap-v3:ETH-USDC", "WBTC": "uniswap-v3:WBTC-ETH", "USDC": "curve:3pool",
             "LINK": "uniswap-v3:LINK-ETH", "UNI": "uniswap-v3:UNI-ETH", "ARB": "camelot:ARB-ETH"}
SIM_PORTFOLIOS = ("alpha", "beta")
SIM_STRATEGIES = ("arb-dex-eth", "liq-aave-eth", "sandwich-univ2", "backrun-arbitrum", "jit-univ3")
SIM_CHAINS = ("ethereum", "arbitrum")
SIM_SOURCES = ("price-oracle", "gas-tracker", "liquidity-monitor")


@dataclass(frozen=True)
class Hostile:
    """One message as a bot could publish it, and what the engine owes us for it."""

    topic: str
    key: str
    value: bytes | None
    label: str
    must_reject: bool
    touches_valid: bool = False

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis prints examples with it
        printer.text(repr(self))

    def __repr__(self) -> str:  # keep falsifying examples readable (values can be 1.5 MiB)
        size = -1 if self.value is None else len(self.value)
        head = None if self.value is None else self.value[:120]
        return (f"Hostile({self.label!r}, {self.topic}, key={self.key[:40]!r}, {size} B {head!r}, "
                f"must_reject={self.must_reject}, touches_valid={self.touches_valid})")


@dataclass(frozen=True)
class World:
    """The valid world hostile input is aimed at: the stream's event time and the simulator's names."""

    ts_ms: int
    portfolios: tuple[str, ...] = SIM_PORTFOLIOS
    strategies: tuple[str, ...] = SIM_STRATEGIES
    prices: Mapping[str, float] = field(default_factory=lambda: dict(SIM_PRICES))
    chains: tuple[str, ...] = SIM_CHAINS
    recent_positions: tuple[dict[str, Any], ...] = ()
    """Valid position events already sent (re-delivery cases; ``touches_valid``)."""

    def at(self, ts_ms: int) -> World:
        return dataclasses.replace(self, ts_ms=ts_ms)


class Chooser(Protocol):
    """The randomness a generator draws from: Hypothesis (shrinkable) or ``random.Random``."""

    def choice(self, options: Sequence[T]) -> T: ...
    def integer(self, lo: int, hi: int) -> int: ...
    def text(self, max_size: int) -> str: ...
    def binary(self, max_size: int) -> bytes: ...


class RandomChooser:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def text(self, max_size: int) -> str:
        size = self.rng.randint(0, max_size)
        return "".join(chr(self.rng.choice((self.rng.randint(0, 0x7F), self.rng.randint(0x80, 0x2FFF),
                                            self.rng.randint(0x1F300, 0x1FAFF)))) for _ in range(size))

    def binary(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))


# ---- classification -----------------------------------------------------------------------------
def id_must_reject(name: str) -> bool:
    """A name with a control, format or surrogate character, empty, or over 1,000 characters."""
    return (not name or len(name) > 1_000
            or any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name))


PRICE_FIELDS = ("price_usd", "entry_price_usd")
CAPPED_FIELDS = ("quantity", "notional_usd")
INT_FIELDS = ("ts_ms", "seq", "interval_ms", "bundles_submitted", "bundles_included", "bundles_reverted")
NON_NEGATIVE_FIELDS = ("base_fee_gwei", "priority_fee_gwei", "depth_usd", "spread_bps", "volume_usd",
                       "gas_spent_usd")


def number_must_reject(name: str, value: float) -> bool:
    """Whether ``value`` in field ``name`` breaks a contract bound whatever the configured caps."""
    if name == "ts_ms":
        return True  # every extreme is far future, far past, negative or not an integer
    if name in INT_FIELDS and ((isinstance(value, float) and not value.is_integer()) or value < 0):
        return True
    if name == "interval_ms":
        return value <= 0
    if name in PRICE_FIELDS:
        return True  # zero, negative, denormal or astronomic: outside any price range
    if name in CAPPED_FIELDS:
        return abs(value) >= HUGE
    if name in NON_NEGATIVE_FIELDS:
        return value < 0
    return False


# ---- valid bases --------------------------------------------------------------------------------
def price_tick(w: World, asset: str = "ETH", ts_ms: int | None = None) -> dict[str, Any]:
    return {"kind": "price", "source": "price-oracle", "ts_ms": w.ts_ms if ts_ms is None else ts_ms,
            "asset": asset, "price_usd": w.prices.get(asset, 1.0)}


def gas_tick(w: World, chain: str = "ethereum") -> dict[str, Any]:
    return {"kind": "gas", "source": "gas-tracker", "ts_ms": w.ts_ms, "chain": chain,
            "base_fee_gwei": 25.0, "priority_fee_gwei": 1.5}


def liquidity_tick(w: World, asset: str = "ETH") -> dict[str, Any]:
    return {"kind": "liquidity", "source": "liquidity-monitor", "ts_ms": w.ts_ms, "asset": asset,
            "pool": SIM_POOLS.get(asset, "curve:3pool"), "depth_usd": 4e7, "spread_bps": 2.0}


def position(w: World, portfolio: str, pid: str, seq: int = 1, action: str = "open",
             asset: str = "ETH", quantity: float = 1.0) -> dict[str, Any]:
    price = w.prices.get(asset, 1.0)
    return {"position_id": pid, "seq": seq, "action": action, "portfolio": portfolio,
            "strategy": "fz-strategy", "kind": "arbitrage", "chain": "ethereum", "protocol": "uniswap-v3",
            "asset": asset, "quantity": quantity, "notional_usd": quantity * price,
            "entry_price_usd": price, "ts_ms": w.ts_ms}


def stats(w: World, strategy: str, portfolio: str = "fz-portfolio") -> dict[str, Any]:
    return {"strategy": strategy, "portfolio": portfolio, "chain": "ethereum", "ts_ms": w.ts_ms,
            "interval_ms": 1_000, "bundles_submitted": 10, "bundles_included": 3, "bundles_reverted": 1,
            "gas_spent_usd": 40.0, "gross_pnl_usd": 90.0, "net_pnl_usd": 20.0}


REQUIRED = {
    "price": ("kind", "source", "ts_ms", "asset", "price_usd"),
    "gas": ("kind", "source", "ts_ms", "chain", "base_fee_gwei", "priority_fee_gwei"),
    "liquidity": ("kind", "source", "ts_ms", "asset", "pool", "depth_usd", "spread_bps"),
    POSITIONS: ("position_id", "seq", "action", "portfolio", "strategy", "kind", "chain", "protocol",
                "asset", "quantity", "notional_usd", "entry_price_usd", "ts_ms"),
    STATS: ("strategy", "portfolio", "chain", "ts_ms", "interval_ms", "bundles_submitted",
            "bundles_included", "bundles_reverted", "gas_spent_usd", "gross_pnl_usd", "net_pnl_usd"),
}
STRING_FIELDS = ("kind", "source", "asset", "chain", "pool", "position_id", "action", "portfolio",
                 "strategy", "protocol")


def hostile_name(c: Chooser, w: World, prefix: str = "fz-") -> str:
    """A name of a hostile entity: never one of the simulator's."""
    name = prefix + c.choice((str(c.integer(0, 999)), c.choice(ODD_BUT_PRINTABLE_IDS), c.text(12)))
    return name if name not in w.portfolios + w.strategies else prefix + "x"


def _base(c: Chooser, w: World, topic: str, victim: bool) -> tuple[str, dict[str, Any]]:
    """A valid message of ``topic``: aimed at the simulator's entities when ``victim`` (then only a
    mutation that must be rejected may be applied), else at hostile ones. Returns (key, value)."""
    if topic == TICKS:
        value = c.choice((price_tick, gas_tick, liquidity_tick))(w)
        return str(value.get("asset", value.get("chain"))), value
    if topic == POSITIONS:
        portfolio = c.choice(w.portfolios) if victim else hostile_name(c, w)
        pid = f"fz-{c.integer(0, 50)}"
        return portfolio, position(w, portfolio, pid, seq=c.integer(1, 3), asset=c.choice(tuple(w.prices)))
    strategy = c.choice(w.strategies) if victim else hostile_name(c, w, "fz-s-")
    return strategy, stats(w, strategy)


def _h(topic: str, key: str, value: Any, label: str, must_reject: bool, touches: bool = False) -> Hostile:
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    return Hostile(topic, key, raw, label, must_reject, touches and not must_reject)


def _victim_topic(c: Chooser) -> tuple[str, bool]:
    """A topic, and whether a must-reject mutation aims at the simulator's own entities."""
    topic = c.choice(INPUT_TOPICS)
    return topic, topic == TICKS or c.choice((True, False))


# ---- generators: each returns a short list of hostile messages -------------------------------------
Generator = Callable[[Chooser, World, bool], list[Hostile]]


def gen_random_bytes(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    topic = c.choice(INPUT_TOPICS)
    return [_h(topic, "k", c.binary(300), "random bytes", True)]


def gen_tombstone(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    topic = c.choice(INPUT_TOPICS)
    return [_h(topic, c.choice(w.portfolios), None, "null value (tombstone)", True)]


def gen_not_an_object(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    depth = c.integer(1, 5_000)
    raw = c.choice((b"[" * depth + b"]" * depth, b"[" * depth, b"{\"a\":" * depth + b"1" + b"}" * depth,
                    b"123", b"\"tick\"", b"null", b"true", b"[]", b"1e400", b"-0",
                    b"[" + b"1," * 5000 + b"1]"))
    return [_h(c.choice(INPUT_TOPICS), "ETH", raw, f"not an object ({raw[:12]!r}, {len(raw)} B)", True)]


def gen_bad_syntax(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    """A valid message broken at the byte level (aimed at the simulator's entities: all must fail)."""
    topic, _ = _victim_topic(c)
    key, value = _base(c, w, topic, victim=True)
    raw = orjson.dumps(value)
    field_name = c.choice(tuple(k for k, v in value.items() if isinstance(v, int | float)))
    token = orjson.dumps(value[field_name])
    pattern = b'"' + field_name.encode() + b'":' + token
    variants: dict[str, Callable[[], bytes]] = {
        "truncated": lambda: raw[: c.integer(0, len(raw) - 1)],
        "BOM": lambda: b"\xef\xbb\xbf" + raw,
        "NaN": lambda: raw.replace(pattern, pattern[: -len(token)] + b"NaN", 1),
        "Infinity": lambda: raw.replace(pattern, pattern[: -len(token)] + b"-Infinity", 1),
        "400 digits": lambda: raw.replace(pattern, pattern[: -len(token)] + b"9" * 400, 1),
        "trailing garbage": lambda: raw + b"}x",
        "invalid UTF-8": lambda: raw.replace(b'":"', b'":"\xff\xfe', 1),
        "lone surrogate": lambda: raw.replace(b'":"', b'":"\\ud800', 1),
        "single quotes": lambda: raw.replace(b'"', b"'"),
    }
    name = c.choice(tuple(variants))
    return [_h(topic, key, variants[name](), f"bad syntax: {name}", True)]


def gen_duplicate_key(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    """Parsers disagree on duplicate keys: the last (out-of-range) one must decide, or a rejection."""
    topic, _ = _victim_topic(c)
    key, value = _base(c, w, topic, victim=True)
    tail = {TICKS: b',"ts_ms":9000000000000000}', POSITIONS: b',"quantity":1e300}',
            STATS: b',"interval_ms":0}'}[topic]
    return [_h(topic, key, orjson.dumps(value)[:-1] + tail, "duplicate key, bad last value", True)]


def gen_missing_field(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    topic, _ = _victim_topic(c)
    key, value = _base(c, w, topic, victim=True)
    required = REQUIRED[value["kind"]] if topic == TICKS else REQUIRED[topic]
    drop = c.choice(required)
    value = {k: v for k, v in value.items() if k != drop}
    if c.choice((False, True)):
        value[drop] = None
    return [_h(topic, key, value, f"missing {drop}", True)]


def gen_wrong_type(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    topic, _ = _victim_topic(c)
    key, value = _base(c, w, topic, victim=True)
    name = c.choice(tuple(value))
    if name in STRING_FIELDS:
        value[name] = c.choice(WRONG_TYPED_STRINGS)
    else:
        value[name] = c.choice(WRONG_TYPED_NUMBERS)
    return [_h(topic, key, value, f"wrong type in {name}: {value[name]!r:.20}", True)]


def gen_nested_value(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    """A field replaced by nested arrays, under or over orjson's depth limit of 1024."""
    topic, _ = _victim_topic(c)
    key, value = _base(c, w, topic, victim=True)
    name = c.choice(tuple(value))
    depth = c.choice((2, 100, 1_023, 1_024, 1_025, 3_000, c.integer(1, 20_000)))
    raw = orjson.dumps({**value, name: 0}).replace(b'"' + name.encode() + b'":0',
                                                   b'"' + name.encode() + b'":' + b"[" * depth + b"]" * depth)
    return [_h(topic, key, raw, f"{name} nested {depth} deep", True)]


def gen_extreme_number(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    topic = c.choice(INPUT_TOPICS)
    hostile_key, value = _base(c, w, topic, victim=False)
    names = tuple(k for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool))
    name = c.choice(names)
    number = c.choice(EXTREME_FLOATS + EXTREME_INTS)
    reject = number_must_reject(name, number)
    if topic == TICKS and neutral and not reject:
        name = c.choice(("ts_ms",) + (("price_usd",) if "price_usd" in value else ()))
        reject = True
    value[name] = number
    if reject and topic != TICKS and c.choice((True, False)):  # must fail even on a simulator portfolio
        victim = c.choice(w.portfolios if topic == POSITIONS else w.strategies)
        value["portfolio" if topic == POSITIONS else "strategy"], hostile_key = victim, victim
    return [_h(topic, hostile_key, value, f"{name}={number!r}", reject, touches=topic == TICKS)]


def gen_odd_identifier(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    topic = c.choice(INPUT_TOPICS)
    key, value = _base(c, w, topic, victim=False)
    name = c.choice(tuple(k for k in value if k in STRING_FIELDS and k not in ("kind", "action")))
    odd = c.choice((c.choice(CONTROL_IDS), c.choice(ODD_BUT_PRINTABLE_IDS), c.text(40)))
    if odd in w.portfolios + w.strategies:
        odd = "fz-" + odd
    # any accepted tick moves the market; an unknown asset or chain may be admitted up to a cap
    touches = topic == TICKS or name in ("asset", "chain")
    if neutral and touches and not id_must_reject(odd):
        odd += "\u0000"
    value[name] = odd
    if name in ("portfolio", "strategy"):
        key = odd[:64]
    reject = id_must_reject(odd)
    return [_h(topic, key, value, f"odd {name}: {odd[:30]!r} ({len(odd)} chars)", reject, touches)]


def gen_far_time(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    topic = c.choice(INPUT_TOPICS)
    key, value = _base(c, w, topic, victim=c.choice((True, False)))
    far = c.choice((9_000_000_000_000_000, 2**63 - 1, w.ts_ms + 10 * YEAR_MS, w.ts_ms + 2 * DAY_MS,
                    253_402_300_799_999, c.choice(FAR_PAST_MS), -1, -(2**63)))
    value["ts_ms"] = far
    return [_h(topic, key, value, f"ts_ms={far}", True)]


def gen_near_time(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    """Hostile entities a little late or ahead of the stream: accepted (late events are applied)."""
    topic = c.choice((POSITIONS, STATS))
    key, value = _base(c, w, topic, victim=False)
    value["ts_ms"] = w.ts_ms + c.choice(NEAR_OFFSETS_MS)
    return [_h(topic, key, value, f"ts_ms {value['ts_ms'] - w.ts_ms:+d} ms", False)]


def gen_many_legs(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    portfolio = hostile_name(c, w)
    n = c.choice((0, 1, 2, 100, 1_000, 5_000, c.integer(0, 6_000)))
    unknown = not neutral and c.choice((False, True))
    assets = tuple(f"ZZ{i}" for i in range(n)) if unknown else tuple(w.prices)
    legs = [{"asset": assets[i % len(assets)], "quantity": 1.0, "notional_usd": 1.0} for i in range(n)]
    value = {**position(w, portfolio, f"legs-{n}"), "legs": legs}
    return [_h(POSITIONS, portfolio, value, f"{n} legs{' (unknown assets)' if unknown else ''}", False,
               touches=unknown)]


def gen_bad_legs(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    portfolio = c.choice(w.portfolios)
    bad = c.choice(([1], ["ETH"], [{"asset": "ETH"}], [{"asset": "ETH", "quantity": "1", "notional_usd": 1}],
                    [{"asset": 1, "quantity": 1, "notional_usd": 1}], {"asset": "ETH"}, "legs",
                    [{"asset": "ETH", "quantity": 1e300, "notional_usd": 1e300}], [[[[]]]]))
    value = {**position(w, portfolio, "fz-bad-legs"), "legs": bad}
    return [_h(POSITIONS, portfolio, value, f"bad legs {bad!r:.40}", True)]


def gen_sequence_chaos(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    """One hostile position's events with seqs reordered, duplicated, closed before opened."""
    portfolio, pid = hostile_name(c, w), f"chaos-{c.integer(0, 9)}"
    out = []
    for _ in range(c.integer(1, 8)):
        seq = c.choice((0, 1, 2, 3, 2, 1, 2**63 - 1, 2**64 - 1))
        action = c.choice(("open", "update", "close", "update"))
        quantity = c.choice((1.0, -2.0, 0.0, 5e-324))
        value = position(w, portfolio, pid, seq=seq, action=action, quantity=quantity)
        out.append(_h(POSITIONS, portfolio, value, f"seq {seq} {action}", False))
    return out


def gen_new_entities(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    n = c.integer(1, 40)
    base = c.integer(0, 10**6)
    if c.choice((True, False)):
        names = [f"fz-p{base + i}" for i in range(n)]
        return [_h(POSITIONS, p, position(w, p, "n1"), "new portfolio", False) for p in names]
    names = [f"fz-s{base + i}" for i in range(n)]
    return [_h(STATS, s, stats(w, s), "new strategy", False) for s in names]


def gen_extra_field(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    """Unknown fields are ignored by the contract: a deep or large one must still not hurt."""
    topic = c.choice((POSITIONS, STATS) if neutral else INPUT_TOPICS)
    key, value = _base(c, w, topic, victim=False)
    depth = c.choice((10, 500, 1_000))
    extra = c.choice((orjson.dumps(BIG_STRING), b"[" * depth + b"]" * depth, b"null",
                      orjson.dumps({"nested": list(range(100))})))
    raw = orjson.dumps({**value, "note": 0}).replace(b'"note":0', b'"note":' + extra)
    return [_h(topic, key, raw, f"extra field ({len(raw)} B)", False, touches=topic == TICKS)]


def gen_key_mismatch(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    portfolio = hostile_name(c, w)
    return [_h(POSITIONS, c.choice(w.portfolios), position(w, portfolio, "km-1"), "key != portfolio", False)]


def gen_oversized(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    topic, _ = _victim_topic(c)
    key, value = _base(c, w, topic, victim=True)
    size = c.choice((1_048_577, 1_500_000))
    return [_h(topic, key, orjson.dumps({**value, "note": "x" * size}), f"oversized {size} B", True)]


def gen_redelivery(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    """A valid position of a simulator portfolio delivered again (at-least-once): idempotent, but its
    snapshot counts the duplicate, so it touches valid output."""
    if not w.recent_positions:
        return gen_key_mismatch(c, w, neutral)
    value = c.choice(w.recent_positions)
    return [_h(POSITIONS, str(value["portfolio"]), value, "re-delivered position", False, touches=True)]


def gen_plausible_market(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    """Ticks a bot could publish that pass a lax check: extreme fees and depths, unknown names."""
    choices: list[dict[str, Any]] = [
        {**gas_tick(w), "base_fee_gwei": c.choice((1e308, 1e18, 5e-324, 0.0))},
        {**liquidity_tick(w), "depth_usd": c.choice((1e308, 0.0, 5e-324)),
         "spread_bps": c.choice((0.0, 1e308))},
        {**price_tick(w), "source": "evil-oracle"},
        {**price_tick(w, asset="DOGE")},
        {**gas_tick(w, chain="solana")},
        {**price_tick(w), "volume_usd": 1e308},
    ]
    value = c.choice(choices)
    return [_h(TICKS, str(value.get("asset", value.get("chain"))), value, f"plausible tick {value}"[:80],
               False, touches=True)]


NEUTRAL_GENERATORS: tuple[Generator, ...] = (
    gen_random_bytes, gen_tombstone, gen_not_an_object, gen_bad_syntax, gen_duplicate_key,
    gen_missing_field, gen_wrong_type, gen_nested_value, gen_extreme_number, gen_odd_identifier,
    gen_far_time, gen_near_time, gen_many_legs, gen_bad_legs, gen_sequence_chaos, gen_new_entities,
    gen_extra_field, gen_key_mismatch,
)
"""Generators whose output, in neutral mode, cannot change the simulator's own portfolios."""
ALL_GENERATORS: tuple[Generator, ...] = (*NEUTRAL_GENERATORS, gen_oversized, gen_redelivery,
                                         gen_plausible_market)


def generate(c: Chooser, w: World, neutral: bool) -> list[Hostile]:
    """One draw: a generator, then its messages."""
    gen = c.choice(NEUTRAL_GENERATORS if neutral else ALL_GENERATORS)
    return gen(c, w, neutral)


# ---- Hypothesis front end -----------------------------------------------------------------------
class DrawChooser:
    """Chooser over Hypothesis draws, so failing examples shrink to the simplest hostile input."""

    def __init__(self, draw: Any) -> None:
        from hypothesis import strategies as st

        self.draw, self.st = draw, st

    def choice(self, options: Sequence[T]) -> T:
        return self.draw(self.st.sampled_from(options))  # type: ignore[no-any-return]

    def integer(self, lo: int, hi: int) -> int:
        return int(self.draw(self.st.integers(lo, hi)))

    def text(self, max_size: int) -> str:
        return str(self.draw(self.st.text(max_size=max_size)))

    def binary(self, max_size: int) -> bytes:
        return bytes(self.draw(self.st.binary(max_size=max_size)))


def hostile_batches(world_at: Callable[[int], World], n_slots: int, *, neutral: bool,
                    max_batches: int = 6) -> Any:
    """Strategy: a list of ``(slot, [Hostile, ...])``, ``slot`` in ``range(n_slots)`` being where in
    the valid stream the batch goes and ``world_at(slot)`` the world it is aimed at."""
    from hypothesis import strategies as st

    @st.composite
    def batch(draw: Any) -> tuple[int, list[Hostile]]:
        slot = draw(st.integers(0, n_slots - 1))
        return slot, generate(DrawChooser(draw), world_at(slot), neutral)

    return st.lists(batch(), min_size=1, max_size=max_batches)


# ---- seeded front end (live tests, soak benchmark) -----------------------------------------------
class HostileFeed:
    """Seeded hostile messages for live use. ``max_bytes`` skips anything larger (the soak keeps its
    byte rate sane); ``neutral`` as for the property tests."""

    def __init__(self, seed: int, *, neutral: bool = True, max_bytes: int = 300_000) -> None:
        self.chooser = RandomChooser(random.Random(seed))
        self.neutral, self.max_bytes = neutral, max_bytes
        self.portfolio_serial = 0

    def batch(self, world: World) -> list[Hostile]:
        while True:
            out = [h for h in generate(self.chooser, world, self.neutral)
                   if h.value is None or len(h.value) <= self.max_bytes]
            if out:
                return out


# ---- the cases that broke main (issue 11, adversarial_live.py) ------------------------------------
def crafted(w: World, *, new_portfolios: int = 3_000) -> list[Hostile]:
    """The crafted messages of issue 11, aimed so that none may change the simulator's portfolios:
    the ones that must be rejected name them; the ones that may be accepted name hostile entities."""
    t = w.ts_ms
    victim = w.portfolios[0]
    pos = position(w, victim, "fz-1")
    hostile_pf = "fz-" + victim
    tick = price_tick(w)
    out = [
        _h(TICKS, "ETH", b"[" * 100_000 + b"]" * 100_000, "deep nesting (100,000 brackets)", True),
        _h(TICKS, "ETH", {**tick, "asset": BIG_STRING}, "200 kB asset name", True),
        _h(TICKS, "ETH", {**tick, "price_usd": 1e308}, "price 1e308", True),
        _h(TICKS, "ETH", {**tick, "price_usd": 5e-324}, "price denormal 5e-324", True),
        _h(TICKS, "ETH", {**tick, "ts_ms": 0}, "ts_ms 0 (before the floor)", True),
        _h(TICKS, "ETH", {**tick, "source": "price-oracle\u0000\n", "asset": "ETH\u202e"},
           "control chars in source and asset", True),
        _h(TICKS, "ETH", {**tick, "source": "price-oracle\u0000\n"}, "control chars in source", True),
        _h(TICKS, "ETH", {**tick, "ts_ms": 9_000_000_000_000_000}, "ts_ms 9e15", True),
        _h(TICKS, "ETH", orjson.dumps({**tick, "ts_ms": 0}).replace(b'"ts_ms":0', b'"ts_ms":' + b"[" * 1_000
                                                                    + b"]" * 1_000),
           "ts_ms nested 1000 deep (parses; its repr recurses)", True),
        _h(TICKS, "ETH", orjson.dumps({**tick, "kind": 0}).replace(b'"kind":0', b'"kind":' + b"[" * 1_000
                                                                   + b"]" * 1_000),
           "kind nested 1000 deep (parses; str() of the selector recurses)", True),
        _h(POSITIONS, victim, {**pos, "quantity": 1e300, "notional_usd": 1e300}, "quantity 1e300", True),
        _h(POSITIONS, victim, {**pos, "ts_ms": 9_000_000_000_000_000}, "position ts_ms 9e15", True),
        _h(POSITIONS, hostile_pf, {**pos, "portfolio": hostile_pf, "position_id": "fz-2", "asset": "NOPE"},
           "unknown asset", False, touches=True),
        _h(POSITIONS, hostile_pf, {**pos, "portfolio": hostile_pf, "position_id": "fz-3", "action": "close"},
           "close before open", False),
        _h(POSITIONS, victim, {**pos, "portfolio": hostile_pf, "position_id": "fz-4"}, "key != portfolio",
           False),
        _h(POSITIONS, hostile_pf, {**pos, "portfolio": hostile_pf, "position_id": "fz-5", "seq": 2**63},
           "seq 2^63", False),
        _h(POSITIONS, hostile_pf, {**pos, "portfolio": hostile_pf, "position_id": "fz-6",
                                   "legs": [{"asset": "ETH", "quantity": 1, "notional_usd": 1}] * 5_000},
           "5000 legs", False),
        _h(STATS, "s", {"strategy": "fz", "ts_ms": t, "window_ms": 0}, "stats window 0", True),
        _h(TICKS, "ETH", orjson.dumps({**tick, "note": "x" * 1_500_000}), "1.5 MiB tick", True),
    ]
    out += [_h(POSITIONS, f"fz-p{i}", {**pos, "portfolio": f"fz-p{i}", "position_id": f"c{i}"},
               "new portfolio", False) for i in range(new_portfolios)]
    return out

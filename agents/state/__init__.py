"""Checkpointed pipeline state: versioned, authenticated data blobs per input partition plus market.

* :mod:`agents.state.checkpoint` — :func:`take` / :func:`restore` (the API the wiring calls), keys
  and the coverage rule.
* :mod:`agents.state.envelope` — the sealed blob: header, zlib body, HMAC-SHA256 tag, size caps.
* :mod:`agents.state.codec` — arrays, bytes, non-finite floats and model pickles inside a document.
* :mod:`agents.state.risk` — the risk core's market and portfolio parts.
* :mod:`agents.state.errors` — :class:`CheckpointError` and its reasons.

No Faust, no Kafka: the wiring writes the blobs to a changelogged table and reads them back.
"""

from agents.state.checkpoint import MARKET_KEY, RestoreReport, partition_key, partitions_of, restore, take
from agents.state.errors import REASONS, CheckpointError

__all__ = ["MARKET_KEY", "REASONS", "CheckpointError", "RestoreReport", "partition_key", "partitions_of",
           "restore", "take"]

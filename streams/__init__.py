"""The Faust shell around the pure cores in ``agents/``: the one package that imports Faust
(besides the Faust record of ``schemas/records.py``).

The worker (``mevrisk worker``: :mod:`streams.worker`) in the order its data flows:

* :mod:`streams.app` — the one Faust app; :mod:`streams.topics` — topic names and objects.
* :mod:`streams.ingest` — input agents: validate each message (bad ones to ``risk.dlq`` via
  :mod:`streams.dlq`) and offer the good ones to the host.
* :mod:`streams.host` — the pipeline host: owns this worker's ``agents.pipeline.RiskPipeline``,
  replicates the market feed, publishes the outputs, and runs recovery on start and on every
  rebalance. :mod:`streams.wiring` builds the pipeline it holds.
* Recovery's Kafka side, used by the host: :mod:`streams.recovery` (input replay, output heads,
  operator actions), :mod:`streams.state_store` (state checkpoints on ``risk.state``),
  :mod:`streams.model_store` (model checkpoints on ``risk.models``).
* :mod:`streams.notify` — ``risk.alerts`` to the notification dispatcher (core: ``agents.notify``).
* :mod:`streams.web`, :mod:`streams.api` — ``/metrics``, the REST API and the dashboard.

Around them: :mod:`streams.supervision` (a crashed agent stops the worker), :mod:`streams.metrics`,
:mod:`streams.settings`, and the ``mevrisk`` commands (:mod:`streams.cli`).
"""

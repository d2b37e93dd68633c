"""Alerting core (issue 4): CEL rules, alert lifecycle, silences, inhibition, kill switch.

Pure Python, no Faust: the agents in ``agent*.py`` wire it to topics and tables.

* :mod:`~agents.alerts.rules` - load / validate / compile ``deploy/config/rules.yaml``
  (format and CEL context documented there), ``check_file`` for ``mevrisk rules check``.
* :mod:`~agents.alerts.engine` - :class:`~agents.alerts.engine.AlertEngine`: evaluate,
  tick (watermark), acknowledge, resolve, silences, reload, state persistence.
* :mod:`~agents.alerts.lifecycle` - alert state and the :class:`AlertEvent` record.
* :mod:`~agents.alerts.controls` - HALT / REDUCE / RESUME decisions per scope.
* :mod:`~agents.alerts.backtest` - ``run_rules`` for offline replay.
* :mod:`~agents.alerts.summary` - the seed's alert summary over a period.
* :mod:`~agents.alerts.fastpath` - pure-Python evaluation of simple CEL (checked against
  the library), the reason the engine reaches its throughput.
"""

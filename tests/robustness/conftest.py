"""The live robustness tests reuse the integration fixtures: a fresh topic prefix per test (``env``) and
watched worker processes (``start_worker``, ``worker_watch``); the broker is ``kafka_bootstrap``."""

from tests.integration.conftest import env, start_worker, worker_watch

__all__ = ["env", "start_worker", "worker_watch"]

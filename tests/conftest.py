"""Shared fixtures and suite policy.

* The Kafka broker is real: KAFKA_BOOTSTRAP_SERVERS if set, else a testcontainers KafkaContainer
  where a Docker engine answers, else the project's local broker (deploy/kafka).
* Checks registered in ``item.stash[POST_CALL_CHECKS]`` run after the test body and fail the test
  (the integration tests' crash watch uses this).
* With ``CI=true``: Hypothesis runs the ``ci`` profile (derandomized, fixed example counts, no
  deadline), and a test skipped for a reason outside ``CI_SKIP_ALLOWLIST`` fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
from hypothesis import settings

XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
"""Index of this pytest-xdist process (0 without xdist): each process runs its own broker."""
TEST_BROKER_PORT = int(os.environ.get("MEVRISK_TEST_BROKER_PORT", "19092")) + 10 * XDIST_WORKER
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# ---- Hypothesis ------------------------------------------------------------------------------
# ci: the same examples on every run, so a red build reproduces (a fresh clone has no example
# database); the count is fixed (tests that set max_examples keep theirs) and slow CI machines
# do not turn into flaky deadline failures.
settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None, database=None,
                          print_blob=True)
if os.environ.get("HYPOTHESIS_PROFILE") or IN_CI:
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")

# ---- checks after the test body ----------------------------------------------------------------
POST_CALL_CHECKS = pytest.StashKey[list[Callable[[], None]]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Run the test's post-call checks: they fail the test itself (not its teardown). When the
    test failed too, a failing check is reported as the cause (a crashed worker explains a timeout)."""
    try:
        result = yield
    except Exception as failure:
        for check in item.stash.get(POST_CALL_CHECKS, []):
            try:
                check()
            except AssertionError as crash:
                raise crash from failure
        raise
    for check in item.stash.get(POST_CALL_CHECKS, []):
        check()
    return result


# ---- no silent skips in CI ---------------------------------------------------------------------
CI_SKIP_ALLOWLIST: dict[str, str] = {
    # "<substring of the skip reason>": "why this skip is acceptable in CI",
    # Empty on purpose: CI runs as root on Debian with `make system-deps` (kcat, Prometheus,
    # Alertmanager, Chromium, Java, Maven, openssl) and the dev extras installed, so every test
    # can run there. Add an entry only with the reason it cannot.
}
_unexpected_skips: list[tuple[str, str]] = []


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _note_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if not any(allowed in reason for allowed in CI_SKIP_ALLOWLIST):
        _unexpected_skips.append((report.nodeid, reason))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and _unexpected_skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if IN_CI and _unexpected_skips:
        terminalreporter.section("skips not allowed in CI (tests/conftest.py CI_SKIP_ALLOWLIST)", red=True)
        for nodeid, reason in _unexpected_skips:
            terminalreporter.line(f"{nodeid}: {reason}", red=True)
        terminalreporter.line(f"{len(_unexpected_skips)} unexpected skip(s): the run fails", red=True)


# ---- the broker --------------------------------------------------------------------------------
def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker for the whole session."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    from streams.broker import LocalBroker, start, stop

    broker = LocalBroker(port=TEST_BROKER_PORT, controller_port=TEST_BROKER_PORT + 1)
    stop(broker)
    import shutil

    shutil.rmtree(broker.data_dir, ignore_errors=True)
    start(broker)
    try:
        yield broker.bootstrap
    finally:
        stop(broker)
        shutil.rmtree(broker.data_dir, ignore_errors=True)

"""The suite's own policy (tests/conftest.py): in CI a skip outside the allowlist fails the run,
Hypothesis runs a derandomized profile there, and the package doctests are collected."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import settings

import tests.conftest as suite
from streams.settings import REPO_ROOT

CONFTEST = "from tests.conftest import pytest_collectreport, pytest_runtest_logreport, " \
           "pytest_sessionfinish, pytest_terminal_summary\n"
SKIPPING = """
import pytest

def test_runs():
    pass

@pytest.mark.skipif(True, reason="kcat (Debian package kcat) is not installed")
def test_needs_kcat():
    pass
"""


@pytest.fixture
def policy(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setattr(suite, "_unexpected_skips", [])  # the inner run's, not this session's
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_skips=SKIPPING)
    return pytester


def test_a_skip_fails_the_run_in_ci(policy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite, "IN_CI", True)
    result = policy.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*skips not allowed in CI*", "*test_needs_kcat*kcat*not installed*"])


def test_an_allowed_skip_passes_in_ci(policy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite, "IN_CI", True)
    monkeypatch.setitem(suite.CI_SKIP_ALLOWLIST, "kcat (Debian package kcat)", "a test of the allowlist")
    assert policy.runpytest("-p", "no:cacheprovider").ret == pytest.ExitCode.OK


def test_a_skip_outside_ci_is_reported_not_failed(policy: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite, "IN_CI", False)
    assert policy.runpytest("-p", "no:cacheprovider").ret == pytest.ExitCode.OK


def test_ci_profile_is_derandomized_and_fixed() -> None:
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.deadline is None and ci.database is None and ci.max_examples == 100
    if suite.IN_CI:
        assert settings.default.derandomize and settings.default.deadline is None


def test_doctests_of_the_packages_are_collected() -> None:
    """`pytest` with no arguments collects the doctests of agents/, streams/ and schemas/."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    packages = {"agents", "streams", "schemas"}
    doctests = [line for line in out.stdout.splitlines() if line.split("/")[0] in packages]
    assert len(doctests) >= 50, out.stdout[-2000:]
    assert {line.split("/")[0] for line in doctests} == packages
    assert out.returncode == 0, out.stdout[-2000:]

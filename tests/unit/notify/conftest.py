"""Fixtures for the notification tests: alert events and real loopback peers.

* ``receiver`` — an aiohttp server on 127.0.0.1 (ephemeral port) that records
  every request and answers from a per-path script (status codes or ``"hang"``).
* ``smtp_server`` — an aiosmtpd SMTP server on a free loopback port.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.unit.notify.helpers import SMTP_PASSWORD, SMTP_USER, MailSink, Receiver, SmtpPeer, free_port


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recv.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    recv.url = f"http://{host}:{port}"
    yield recv
    await runner.cleanup()


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
                   ) -> AuthResult:
    ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


def _start_smtp(**kwargs: Any) -> tuple[Controller, SmtpPeer]:
    sink = MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, SmtpPeer(sink, port)


@pytest.fixture
def smtp_server() -> Iterator[SmtpPeer]:
    """Plain SMTP with AUTH LOGIN/PLAIN allowed without TLS (loopback only)."""
    controller, peer = _start_smtp(
        authenticator=_authenticator, auth_require_tls=False, auth_required=True,
    )
    yield peer
    controller.stop()


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture
def starttls_smtp_server(tls_context: ssl.SSLContext) -> Iterator[SmtpPeer]:
    controller, peer = _start_smtp(
        authenticator=_authenticator, tls_context=tls_context, require_starttls=True,
        auth_required=True,
    )
    yield peer
    controller.stop()


@pytest.fixture
def implicit_tls_smtp_server(tls_context: ssl.SSLContext) -> Iterator[SmtpPeer]:
    controller, peer = _start_smtp(
        authenticator=_authenticator, ssl_context=tls_context, auth_required=True,
        auth_require_tls=False,
    )
    yield peer
    controller.stop()

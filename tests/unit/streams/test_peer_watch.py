"""The peer watch tells a dead peer (its port refuses connections) from a live or unreachable one,
and finds the dead peer's group member by the URL Faust's assignor advertises for it."""

from __future__ import annotations

import asyncio
import socket

import orjson
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from streams.peer_watch import member_urls, refused


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the block ends: nothing listens there


def test_a_port_nothing_listens_on_is_refused() -> None:
    assert asyncio.run(refused(f"http://127.0.0.1:{_closed_port()}"))


def test_a_listening_port_is_not_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not asyncio.run(refused(f"http://127.0.0.1:{listener.getsockname()[1]}"))


def _member(member_id: str, user_data: bytes) -> tuple[str, str, str, bytes, bytes]:
    metadata = ConsumerProtocolMemberMetadata(3, ["t"], user_data).encode()
    return (member_id, "client", "/127.0.0.1", metadata, b"")


def test_member_urls_reads_the_url_each_member_advertises() -> None:
    members = [
        _member("vm:6066-a1", orjson.dumps({"url": "http://127.0.0.1:6066/", "assignment": {}})),
        _member("vm:6067-b2", orjson.dumps({"url": "http://127.0.0.1:6067"})),
        _member("other-client", b"not json"),
        _member("no-url", orjson.dumps({"assignment": {}})),
    ]
    assert member_urls(members) == {"http://127.0.0.1:6066": "vm:6066-a1",
                                    "http://127.0.0.1:6067": "vm:6067-b2"}

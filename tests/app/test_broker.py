"""The filesystem broker (embedded default): publishing is atomic for a consumer in another
process, an unreadable message does not stop the consumer, and Celery is configured with this
transport for ``filesystem://``."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection

from app import broker
from app.broker import (
    FILESYSTEM_SCHEME,
    FilesystemTransport,
    kombu_broker_url,
    producer,
    waiting_run_jobs,
)
from app.core.config import Settings

#: big enough that writing one message takes milliseconds: with kombu's own channel (which
#: writes into the final file name) the consumer then takes a partly written message
PAYLOAD_BYTES = 4_000_000
MESSAGES = 8


def _options(folder: Path) -> dict[str, Any]:
    return {"data_folder_in": str(folder), "data_folder_out": str(folder),
            "store_processed": False}


def _publish(folder: Path, n: int) -> None:
    with Connection(f"{FILESYSTEM_SCHEME}://", transport_options=_options(folder)) as c:
        channel = c.default_channel
        for i in range(n):
            channel._put("q", {"i": i, "pad": "x" * PAYLOAD_BYTES})


PUBLISHER = """
import sys
from pathlib import Path
from kombu import Connection
from app.broker import FILESYSTEM_SCHEME
folder = sys.argv[1]
options = {"data_folder_in": folder, "data_folder_out": folder, "store_processed": False}
with Connection(FILESYSTEM_SCHEME + "://", transport_options=options) as c:
    for i in range(int(sys.argv[2])):
        c.default_channel._put("q", {"i": i, "pad": "x" * int(sys.argv[3])})
"""


def test_consumer_in_another_process_sees_whole_messages_only(tmp_path: Path) -> None:
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(tmp_path), str(MESSAGES),
                                  str(PAYLOAD_BYTES)], cwd=Path(__file__).parents[2])
    received: list[int] = []
    with Connection(f"{FILESYSTEM_SCHEME}://", transport_options=_options(tmp_path)) as c:
        channel = c.default_channel
        assert isinstance(c.transport, FilesystemTransport)
        while len(received) < MESSAGES:
            try:
                message = channel._get("q")
            except Empty:
                assert publisher.poll() is None or any(tmp_path.glob("*.msg")), \
                    f"publisher ended and only {len(received)} of {MESSAGES} arrived"
                continue
            assert len(message["pad"]) == PAYLOAD_BYTES
            received.append(message["i"])
    assert publisher.wait(30) == 0
    assert received == list(range(MESSAGES))
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_unreadable_message_is_logged_and_skipped(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    _publish(tmp_path, 2)
    first = sorted(tmp_path.glob("*.msg"))[0]
    first.write_bytes(b"")  # the message consumed first is now unreadable
    with Connection(f"{FILESYSTEM_SCHEME}://", transport_options=_options(tmp_path)) as c:
        with caplog.at_level(logging.ERROR, logger="wedgenet.broker"):
            message = c.default_channel._get("q")
    assert message["i"] == 1
    assert any("unreadable message" in r.getMessage() for r in caplog.records)
    assert list(tmp_path.iterdir()) == []


def test_messages_are_consumed_in_publish_order_across_a_digit_boundary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kombu's unpadded names put "1000000_..." before "999999_..." ; the padded ones do not
    stamps = [999_999_000, 1_000_000_000, 10_000_000_000]  # the three publishes' clocks
    real = time.time_ns  # for any other caller of the clock meanwhile
    monkeypatch.setattr(broker.time, "time_ns", lambda: stamps.pop(0) if stamps else real())
    with Connection(f"{FILESYSTEM_SCHEME}://", transport_options=_options(tmp_path)) as c:
        for i in range(3):
            c.default_channel._put("q", {"i": i})
        received = [c.default_channel._get("q")["i"] for _ in range(3)]
    assert received == [0, 1, 2]


def test_celery_uses_the_atomic_transport_for_filesystem_urls(tmp_path: Path) -> None:
    settings = Settings(broker_url="filesystem://", broker_dir=str(tmp_path),
                        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert kombu_broker_url(settings) == f"{FILESYSTEM_SCHEME}://"
    assert kombu_broker_url(Settings(broker_url="redis://h:1/2")) == "redis://h:1/2"
    app = producer(settings)
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, FilesystemTransport)
    app.send_task("wedgenet.run_job", args=["ab" * 16])
    assert waiting_run_jobs(settings) == ["ab" * 16]
    assert not list((tmp_path / "queue").glob("*.part"))

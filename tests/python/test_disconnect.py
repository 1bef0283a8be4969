"""A python-socketio client that calls disconnect() leaves at once, as others see it."""
import pytest

from conftest import Server
from test_client import Client, channel_name, next_command

# reconnect-timeout: far beyond every wait of these tests, so a leave they see was
# announced at once, never at the end of the grace window
GRACE = "60s"


@pytest.fixture(scope="module")
def long_grace():
    srv = Server(f"[Server]\nreconnect-timeout = {GRACE}\n")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
def test_disconnect_is_announced_at_once(long_grace, transports):
    ch = channel_name("leave")
    watcher = Client(long_grace.url, transports=["websocket"], identity="stays")
    leaver = Client(long_grace.url, transports=transports, identity="leaves")
    try:
        assert watcher.call("subscribe", ch)["count"] == 1
        assert leaver.call("subscribe", ch)["count"] == 2
        # over WebSocket, python-socketio closes the socket (1000) before it sends `41`
        leaver.close()
        ev = next_command(watcher, "onUnsubscribe")
        assert (ev["identity"], ev["data"]["count"]) == ("leaves", 1)
    finally:
        watcher.close()

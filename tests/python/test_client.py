"""python-socketio client against the realtime server."""
import itertools
import os
import queue
import re
import time
from datetime import datetime, timezone

import pytest
import socketio

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
WAIT = 5  # seconds, for every single wait
_counter = itertools.count()


def channel_name(prefix):
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{time.time_ns()}"


class Client:
    """A socketio.Client whose `message` events land in a queue."""

    def __init__(self, url, transports=None, identity=None):
        self.sio = socketio.Client(reconnection=False)
        self.inbox = queue.Queue()
        self.commands = queue.Queue()
        self.sio.on("message", self._on_message)
        auth = {"identity": identity} if identity is not None else None
        self.sio.connect(url, transports=transports, auth=auth, namespaces=["/"],
                         wait_timeout=WAIT)

    def _on_message(self, *args):
        # the envelope is the first argument (a recovery offset may follow); channel
        # messages go to the inbox, commands (onSubscribe, ...) to their own queue
        env = args[0] if args else None
        if isinstance(env, dict) and env.get("type") == "command":
            self.commands.put(env)
        else:
            self.inbox.put(env)

    def call(self, event, data):
        return self.sio.call(event, data, timeout=WAIT)

    def next_message(self):
        try:
            return self.inbox.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no 'message' event within {WAIT} s")

    def close(self):
        self.sio.disconnect()


@pytest.fixture
def clients(server):
    made = []

    def make(**kwargs):
        c = Client(server.url, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.close()
        except Exception:
            pass


def assert_envelope(env, channel, identity, data):
    assert isinstance(env, dict), env
    assert sorted(env) == ["channel", "data", "identity", "timestamp", "type"], env
    assert env["type"] == "message"
    assert env["channel"] == channel
    assert env["identity"] == identity
    assert TIMESTAMP_RE.match(env["timestamp"]), env["timestamp"]
    ts = datetime.strptime(env["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - ts).total_seconds()) < 60, env["timestamp"]
    assert env["data"] == data
    assert type(env["data"]) is type(data)


@pytest.mark.parametrize("transports,expected", [
    (["websocket"], "websocket"),
    (["polling"], "polling"),
    (None, "websocket"),  # polling first, then upgrade
])
def test_subscribe_publish_receive(clients, transports, expected):
    c = clients(transports=transports, identity="py")
    assert c.sio.transport() == expected
    ch = channel_name("py")
    assert c.call("subscribe", ch) == {"ok": True, "channel": ch, "count": 1}
    assert c.call("publish", (ch, {"msg": "hi"})) == {"ok": True}
    assert_envelope(c.next_message(), ch, "py", {"msg": "hi"})


def test_anonymous_identity_is_null(clients):
    c = clients(transports=["websocket"])
    ch = channel_name("anon")
    assert c.call("subscribe", ch) == {"ok": True, "channel": ch, "count": 1}
    assert c.call("publish", (ch, ["a", 1, None])) == {"ok": True}
    assert_envelope(c.next_message(), ch, None, ["a", 1, None])


def test_two_clients(clients):
    ch = channel_name("pair")
    a = clients(transports=["websocket"], identity="alice")
    b = clients(identity="bob")
    assert a.call("subscribe", ch) == {"ok": True, "channel": ch, "count": 1}
    assert b.call("subscribe", ch) == {"ok": True, "channel": ch, "count": 2}
    assert b.call("publish", (ch, "from bob")) == {"ok": True}
    assert_envelope(a.next_message(), ch, "bob", "from bob")
    assert_envelope(b.next_message(), ch, "bob", "from bob")


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
def test_binary(clients, transports):
    c = clients(transports=transports, identity="bin")
    ch = channel_name("bin")
    assert c.call("subscribe", ch)["ok"] is True
    blob = bytes(range(256))
    assert c.call("publish", (ch, blob)) == {"ok": True}
    assert_envelope(c.next_message(), ch, "bin", blob)
    obj = {"name": "x", "blob": blob, "parts": [b"\x00\xff", {"inner": b""}]}
    assert c.call("publish", (ch, obj)) == {"ok": True}
    assert_envelope(c.next_message(), ch, "bin", obj)


def test_emit_with_callback_and_ordering(clients):
    c = clients(transports=["websocket"])
    ch = channel_name("order")
    assert c.call("subscribe", ch)["ok"] is True
    acks = queue.Queue()
    n = 200
    for i in range(n):
        c.sio.emit("publish", (ch, {"seq": i}), callback=lambda *a: acks.put(a))
    for _ in range(n):
        assert acks.get(timeout=WAIT) == ({"ok": True},)
    got = [c.next_message()["data"]["seq"] for _ in range(n)]
    assert got == list(range(n))


def test_bad_requests(clients):
    c = clients(transports=["websocket"])
    for args in ("", 42):
        res = c.call("subscribe", args)
        assert isinstance(res, dict) and res.get("ok") is False, res
        assert isinstance(res.get("error"), str) and res["error"], res
    ch = channel_name("after-bad")
    assert c.call("subscribe", ch) == {"ok": True, "channel": ch, "count": 1}
    assert c.call("publish", (ch, "ok")) == {"ok": True}
    assert_envelope(c.next_message(), ch, None, "ok")


def test_invalid_namespace(server):
    sio = socketio.Client(reconnection=False)
    errors = []
    sio.on("connect_error", lambda data: errors.append(data), namespace="/nope")
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            sio.connect(server.url, namespaces=["/nope"], transports=["websocket"],
                        wait_timeout=WAIT)
    finally:
        sio.disconnect()
    assert errors, "no connect_error for /nope"
    msg = errors[0]["message"] if isinstance(errors[0], dict) else errors[0]
    assert msg == "Invalid namespace"


def next_command(client, name):
    """The next command envelope named `name` (others are skipped)."""
    while True:
        try:
            env = client.commands.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no {name} command within {WAIT} s")
        if env["data"]["command"] == name:
            return env


def test_tabs_of_one_identity_are_one_member(clients):
    ch = channel_name("tabs")
    tab1 = clients(transports=["websocket"], identity="pia")
    tab2 = clients(identity="pia")
    other = clients(transports=["websocket"], identity="quinn")
    assert tab1.call("subscribe", ch)["count"] == 1
    assert tab2.call("subscribe", ch)["count"] == 1
    assert other.call("subscribe", ch)["count"] == 2
    ev = next_command(tab2, "onSubscribe")
    assert (ev["identity"], ev["data"]["count"]) == ("pia", 1)
    ev = next_command(tab2, "onSubscribe")
    assert (ev["identity"], ev["data"]["count"]) == ("quinn", 2)
    # a publish from one tab reaches the other tab too
    assert tab1.call("publish", (ch, "to every tab")) == {"ok": True}
    assert_envelope(tab2.next_message(), ch, "pia", "to every tab")
    assert other.call("unsubscribe", ch) == {"ok": True, "channel": ch, "count": 1}
    ev = next_command(tab1, "onUnsubscribe")
    assert (ev["identity"], ev["data"]["count"]) == ("quinn", 1)


def test_commands(clients):
    ch = channel_name("cmd")
    a = clients(transports=["websocket"], identity="rae")
    a.call("subscribe", ch)
    assert a.call("command", (ch, "ping", {"n": 1})) == {"ok": True}
    ev = next_command(a, "ping")
    assert ev["data"] == {"command": "ping", "options": {"n": 1}}
    refused = a.call("command", (ch, "onSubscribe", None))
    assert refused["ok"] is False and "reserved" in refused["error"]

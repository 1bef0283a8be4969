"""Numbers arrive as they were sent: Python's json keeps integers of any size, so a
python-socketio subscriber sees whether a big integer stayed an integer and a double the
same double."""
import json
import math
import queue
import time
import urllib.request

import socketio

WAIT = 5  # seconds, for every single wait

# (text as published, what Python's json makes of it)
TRICKY = [
    "12345678901234567890123", "100000000000000000000", "-9223372036854775809",
    "18446744073709551616", "-0", "-0.0", "1.5e3", "1E+2", "2.5e-3",
    "3.141592653589793238462643383279", "0.9049426916855675", "0.41413233367384084",
]


def same(got, want):
    """Equal, of the same type, and for floats of the same sign (-0.0 is not 0.0)."""
    if type(got) is not type(want) or got != want:
        return False
    return not isinstance(want, float) or math.copysign(1, got) == math.copysign(1, want)


class Subscriber:
    def __init__(self, url, channel):
        self.inbox = queue.Queue()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("message", lambda env, *rest: self.inbox.put(env))
        self.sio.connect(url, transports=["websocket"], namespaces=["/"], wait_timeout=WAIT)
        assert self.sio.call("subscribe", channel, timeout=WAIT)["ok"] is True

    def next(self, kind):
        """The next envelope of `kind`; membership commands (onSubscribe) are skipped."""
        deadline = time.monotonic() + WAIT
        while True:
            env = self.inbox.get(timeout=max(0.01, deadline - time.monotonic()))
            if env.get("type") != kind:
                continue
            if kind == "command" and env["data"]["command"].startswith("on"):
                continue
            return env


def post(url, body):
    req = urllib.request.Request(url + "/api/publish", data=body.encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=WAIT) as res:
        assert res.status == 200


def channel_name(prefix):
    return f"{prefix}-{time.time_ns()}"


def test_http_publish_keeps_big_ints_and_number_forms(server):
    ch = channel_name("exact")
    sub = Subscriber(server.url, ch)
    try:
        numbers = "[" + ",".join(TRICKY) + "]"
        post(server.url, f'{{"channel":"{ch}","data":{{"n":{numbers}}}}}')
        got = sub.next("message")["data"]["n"]
        want = json.loads(numbers)
        assert isinstance(got[0], int) and got[0] == 12345678901234567890123
        assert isinstance(got[6], float) and got[6] == 1500.0
        changed = [(t, g) for t, g, w in zip(TRICKY, got, want) if not same(g, w)]
        assert changed == [] and len(got) == len(want), got

        # command options too
        post(server.url, f'{{"channel":"{ch}","type":"command",'
                         f'"data":{{"command":"poke","options":{numbers}}}}}')
        got = sub.next("command")["data"]["options"]
        assert [(t, g) for t, g, w in zip(TRICKY, got, want) if not same(g, w)] == []
    finally:
        sub.sio.disconnect()


def test_client_publish_keeps_big_ints_and_negative_zero(server):
    ch = channel_name("exact-pub")
    sub = Subscriber(server.url, ch)
    pub = socketio.Client(reconnection=False)
    try:
        pub.connect(server.url, transports=["websocket"], namespaces=["/"], wait_timeout=WAIT)
        values = [12345678901234567890123, 10**20, -(2**64), 1.5e3, -0.0, 0.1 + 0.2,
                  3.141592653589793]
        assert pub.call("publish", (ch, {"n": values}), timeout=WAIT) == {"ok": True}
        got = sub.next("message")["data"]["n"]
        assert len(got) == len(values) and all(same(g, w) for g, w in zip(got, values)), got
    finally:
        pub.disconnect()
        sub.sio.disconnect()

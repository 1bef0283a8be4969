"""An in-place restart (SIGUSR1) with a python-socketio client on polling: the session
goes on in the new process under the same Engine.IO sid, with no disconnect, and every
message (published through the API, or by the client itself) arrives once and in order."""
import json
import os
import queue
import signal
import time
import urllib.error
import urllib.request

import socketio

from conftest import Server

WAIT = 10  # seconds, for every single wait


def publish(url, channel, data):
    """Publishes, retrying a request the hand-over cut (it was not served, so not delivered)."""
    body = json.dumps({"channel": channel, "data": data}).encode()
    for attempt in range(50):
        req = urllib.request.Request(url + "/api/publish", data=body, method="POST",
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=WAIT) as res:
                assert json.load(res) == {"ok": True, "published": 1}
                return
        except (urllib.error.URLError, ConnectionError):
            if attempt == 49:
                raise
            time.sleep(0.02)


def test_a_polling_client_keeps_its_sid_across_sigusr1():
    server = Server("[Server]\nreconnect-timeout = 10s\n")
    sio = socketio.Client(reconnection=False)
    try:
        inbox = queue.Queue()
        drops = []
        sio.on("message", lambda env, *rest: inbox.put(env))
        sio.on("disconnect", lambda *args: drops.append(args))
        sio.connect(server.url, transports=["polling"], namespaces=["/"], wait_timeout=WAIT)
        channel = f"handover-{time.time_ns()}"
        assert sio.call("subscribe", channel, timeout=WAIT)["ok"] is True
        before = (sio.get_sid("/"), sio.eio.sid)
        total = 40
        for n in range(1, total + 1):
            if n == 15:
                os.kill(server.proc.pid, signal.SIGUSR1)
            if n % 2:
                publish(server.url, channel, {"n": n})
            else:
                sio.emit("publish", (channel, {"n": n}))
                time.sleep(0.02)
        seen = []
        deadline = time.monotonic() + WAIT
        while len(seen) < total:
            env = inbox.get(timeout=max(0.01, deadline - time.monotonic()))
            if env.get("type") == "message":
                seen.append(env["data"]["n"])
        assert "took over the sessions of the previous process" in server.log()
        # Published by the client and by the API at once: each source in order, all once.
        assert sorted(seen) == list(range(1, total + 1))
        assert [n for n in seen if n % 2] == list(range(1, total + 1, 2))
        assert [n for n in seen if not n % 2] == list(range(2, total + 1, 2))
        assert drops == []
        assert (sio.get_sid("/"), sio.eio.sid) == before
    except BaseException:
        print(server.log()[-20000:])
        raise
    finally:
        sio.disconnect()
        server.stop()

"""python-socketio through drops and bursts: a silent drop taken over by the reconnect, and a
burst over long-polling that python-engineio must be able to read (at most 16 packets an
answer)."""
import json
import queue
import selectors
import socket
import struct
import threading
import time
import urllib.request

import pytest
import socketio

from test_client import channel_name

WAIT = 5  # seconds, for every single wait


def api_publish(server, channel, numbers):
    body = json.dumps([{"channel": channel, "data": {"n": n}} for n in numbers]).encode()
    req = urllib.request.Request(f"{server.url}/api/publish", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=WAIT) as res:
        assert json.load(res) == {"ok": True, "published": len(numbers)}


def in_order(sio):
    """Runs `sio`'s handlers in the order the packets arrive: python-engineio gives each
    message a thread of its own, which may reorder them, and the order is under test."""
    start = sio.eio.start_background_task

    def start_background_task(target, *args, **kwargs):
        if target == sio._handle_eio_message:
            return target(*args, **kwargs)
        return start(target, *args, **kwargs)

    sio.eio.start_background_task = start_background_task
    return sio


class Proxy:
    """A TCP proxy in front of the server. `drop_silently()` resets every client's
    connection and keeps its server side open but silent (never read, never closed), as
    a NAT that forgot the flow does; `hold()` refuses new connections until `release()`."""

    def __init__(self, port):
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.peer = {}  # socket -> the socket it forwards to
        self.clients = set()  # the client sides among them
        self.silent = []  # server sides kept open
        self.commands = queue.Queue()
        self.held = False
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            for key, _ in self.sel.select(timeout=0.02):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._forward(key.fileobj)
            while not self.commands.empty():
                self.commands.get()()

    def _accept(self):
        client, _ = self.listener.accept()
        if self.held:
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target))
        self.peer[client], self.peer[upstream] = upstream, client
        self.clients.add(client)
        self.sel.register(client, selectors.EVENT_READ)
        self.sel.register(upstream, selectors.EVENT_READ)

    def _forward(self, sock):
        other = self.peer.get(sock)
        try:
            data = sock.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        for s in (sock, other):
            if self.peer.pop(s, None) is not None:
                self.sel.unregister(s)
                s.close()
            self.clients.discard(s)

    def _drop(self):
        for client in list(self.clients):
            self.clients.discard(client)
            upstream = self.peer.pop(client)
            self.peer.pop(upstream)
            self.sel.unregister(client)
            self.sel.unregister(upstream)
            # Linger 0: the close is a reset, not a goodbye.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            self.silent.append(upstream)

    def drop_silently(self):
        done = threading.Event()
        self.commands.put(lambda: (self._drop(), done.set()))
        assert done.wait(WAIT)

    def hold(self):
        self.held = True

    def release(self):
        self.held = False

    def close(self):
        self.running = False
        self.thread.join(WAIT)
        for s in [*self.peer, *self.silent, self.listener]:
            s.close()


class RecoveringClient(socketio.Client):
    """python-socketio has no connection state recovery: this adds the client's half as
    socket.io-client does it (the pid of the CONNECT reply and the last offset seen go back
    in the next CONNECT; `recovered` when the reply names the same pid)."""

    def __init__(self, identity):
        super().__init__(reconnection_delay=0.05, reconnection_delay_max=0.1,
                         randomization_factor=0)
        self.identity = identity
        self.pid = None
        self.offset = None
        self.recovered = None
        self.inbox = queue.Queue()
        self.connects = queue.Queue()
        self.on("message", self._on_message)
        in_order(self)

    def auth(self):
        auth = {"identity": self.identity}
        if self.pid is not None:
            auth.update(pid=self.pid, offset=self.offset)
        return auth

    def _handle_connect(self, namespace, data):
        if (namespace or "/") not in self.namespaces:
            pid = (data or {}).get("pid")
            self.recovered = self.pid is not None and pid == self.pid
            self.pid = pid
            self.connects.put(self.recovered)
        super()._handle_connect(namespace, data)

    def _on_message(self, env, offset=None):
        if offset is not None:
            self.offset = offset
        if env.get("type") == "message":
            self.inbox.put(env["data"]["n"])

    def take(self, count, within):
        got = []
        deadline = time.monotonic() + within
        while len(got) < count:
            try:
                got.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"{len(got)} of {count} messages within {within} s: {got}")
        return got


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
def test_a_silent_drop_is_taken_over(server, transports):
    proxy = Proxy(server.port)
    client = RecoveringClient("py-nat")
    try:
        client.connect(proxy.url, transports=transports, auth=client.auth, namespaces=["/"],
                       wait_timeout=WAIT)
        assert client.connects.get(timeout=WAIT) is False
        ch = channel_name("py-silent")
        assert client.call("subscribe", ch, timeout=WAIT)["ok"] is True
        api_publish(server, ch, range(1, 6))
        assert client.take(5, WAIT) == [1, 2, 3, 4, 5]

        # Down until the messages are published, so they surely fall in the drop.
        proxy.hold()
        proxy.drop_silently()
        api_publish(server, ch, range(6, 21))
        proxy.release()
        assert client.connects.get(timeout=10) is True, "recovered after the reconnect"
        # Queued for it at the reconnect: a bounded wait, not a measure of speed.
        assert client.take(15, 3) == list(range(6, 21))
        api_publish(server, ch, range(21, 26))
        assert client.take(5, WAIT) == list(range(21, 26))
        time.sleep(0.2)  # no duplicate follows: only a fixed wait shows that
        assert client.inbox.empty()
    finally:
        client.disconnect()
        proxy.close()


def test_a_burst_over_polling_arrives_whole(server):
    sio = in_order(socketio.Client(reconnection=False))
    got = queue.Queue()
    sio.on("message", lambda env, *_: env["type"] == "message" and got.put(env["data"]["n"]))
    sio.connect(server.url, transports=["polling"], namespaces=["/"], wait_timeout=WAIT)
    try:
        ch = channel_name("py-burst")
        assert sio.call("subscribe", ch, timeout=WAIT)["ok"] is True
        api_publish(server, ch, range(1000))
        received = []
        deadline = time.monotonic() + 30
        while len(received) < 1000:
            try:
                received.append(got.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"{len(received)} of 1000 messages within 30 s")
        assert received == list(range(1000))
    finally:
        sio.disconnect()

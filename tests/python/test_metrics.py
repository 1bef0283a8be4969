"""GET /metrics parsed by prometheus_client's own text parser, with live clients on both
transports and a monitor posting to a webhook endpoint run by the test."""
import hashlib
import hmac
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server

WAIT = 5
SECRET = "py-hook-secret"


class Hook:
    """A webhook endpoint: records each POST (headers by lower-case name, body), answers 204."""

    def __init__(self):
        self.hits = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook.lock:
                    hook.hits.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, n):
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            with self.lock:
                if len(self.hits) >= n:
                    return list(self.hits)
            time.sleep(0.02)
        with self.lock:
            return list(self.hits)

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


@pytest.fixture
def monitored(hook):
    srv = Server(f"[Monitor]\nurl = {hook.url}\nsecret = {SECRET}\n")
    yield srv
    srv.stop()


def scrape(url):
    with urllib.request.urlopen(url + "/metrics", timeout=WAIT) as res:
        assert res.status == 200
        ctype = res.headers["Content-Type"]
        return ctype, res.read().decode()


def parse(text):
    """Family name -> family, and sample (name, sorted labels) -> value."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {}
    for f in families.values():
        for s in f.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def connect(url, transports, identity):
    c = socketio.Client(reconnection=False)
    c.connect(url, transports=transports, auth={"identity": identity},
              namespaces=["/"], wait_timeout=WAIT)
    return c


def test_metrics_parse_and_count_what_happens(monitored, hook):
    url = monitored.url
    ctype, text = scrape(url)
    assert ctype.startswith("text/plain; version=0.0.4")
    families, samples = parse(text)
    expected = {
        "realtime_connections": "gauge",
        "realtime_members": "gauge",
        "realtime_channels": "gauge",
        "realtime_subscriptions": "gauge",
        "realtime_messages_published": "counter",
        "realtime_messages_delivered": "counter",
        "realtime_messages_kept": "counter",
        "realtime_messages_dropped": "counter",
        "realtime_slow_client_disconnects": "counter",
        "realtime_recovered": "counter",
        "realtime_recovery_cache_evictions": "counter",
        "realtime_origin_refused": "counter",
        "realtime_refusals": "counter",
        "realtime_monitor_queue": "gauge",
        "realtime_monitor_sent": "counter",
        "realtime_monitor_failed": "counter",
        "realtime_monitor_dropped": "counter",
    }
    assert {n: f.type for n, f in families.items()} == expected
    for f in families.values():
        assert f.documentation, f.name

    ws = connect(url, ["websocket"], "ann")
    poll = connect(url, ["polling"], "ben")
    try:
        for c in (ws, poll):
            ack = c.call("subscribe", "metrics-room", timeout=WAIT)
            assert ack["ok"] is True
        assert ws.call("publish", ("metrics-room", {"n": 1}), timeout=WAIT) == {"ok": True}
        hits = hook.wait(2)
        _, samples = parse(scrape(url)[1])
        assert samples[("realtime_connections", (("transport", "websocket"),))] == 1
        assert samples[("realtime_connections", (("transport", "polling"),))] == 1
        assert samples[("realtime_members", ())] == 2
        assert samples[("realtime_channels", ())] == 1
        assert samples[("realtime_subscriptions", ())] == 2
        assert samples[("realtime_messages_published_total", ())] >= 1
        # onSubscribe x3 (ann: 1; ben: 2 members) and the publish to both.
        assert samples[("realtime_messages_delivered_total", ())] >= 5
        assert samples[("realtime_monitor_dropped_total", ())] == 0
        assert samples[("realtime_origin_refused_total", ())] == 0
        # Refusals are counted by reason, every reason shown from the start.
        assert samples[("realtime_refusals_total", (("reason", "bad_packet"),))] == 0
    finally:
        ws.disconnect()
        poll.disconnect()

    # The monitor's subscribe events, signed with the secret.
    assert len(hits) >= 2
    for headers, body in hits[:2]:
        assert headers["content-type"] == "application/json"
        want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-realtime-signature"] == want
        env = json.loads(body)
        assert env["type"] == "command" and env["data"]["command"] == "onSubscribe"
    assert [json.loads(b)["identity"] for _, b in hits[:2]] == ["ann", "ben"]

    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        _, samples = parse(scrape(url)[1])
        if samples[("realtime_monitor_sent_total", ())] >= 2:
            break
        time.sleep(0.05)
    assert samples[("realtime_monitor_sent_total", ())] >= 2


def test_metrics_methods(server):
    req = urllib.request.Request(server.url + "/metrics", method="HEAD")
    with urllib.request.urlopen(req, timeout=WAIT) as res:
        assert res.status == 200
    req = urllib.request.Request(server.url + "/metrics", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=WAIT)
    assert e.value.code == 405

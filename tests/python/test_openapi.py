"""docs/openapi.json against the real server: every route called, in its success and error
cases, and each answer's status, headers and JSON body validated against the document."""
import json
import re
import socket
import time
from pathlib import Path

import pytest
import requests
import socketio
from jsonschema import Draft202012Validator

from conftest import REPO_ROOT, Server

WAIT = 5
DOC = json.loads(Path(REPO_ROOT, "docs", "openapi.json").read_text())
# Answers that need a state a test cannot cheaply reach: a node shutting down or cut off
# from Redis (tests/daemon/shutdown.rs and tests/cluster check those).
NOT_EXERCISED = {("/readyz", "get", "503")}
# Served on the HTTP port but not part of the HTTP API: the Engine.IO endpoint, the demo
# page and the client bundle.
NOT_API = {"/socket.io/", "/", "/index.html", "/realtime.js"}


def template_of(path):
    """The documented path template `path` falls under (the longest that matches), or None."""
    for template in sorted(DOC["paths"], key=len, reverse=True):
        # A channel name may hold `/`, and an empty one is the same route's 400.
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", ".*", re.escape(template)) + "$"
        if re.match(pattern, path):
            return template
    return None


def schema_validator(schema):
    # The components ride along, so `#/components/...` references resolve.
    return Draft202012Validator({**schema, "components": DOC["components"]})


class Checker:
    """Calls the server and checks each answer against the document."""

    def __init__(self, url):
        self.url = url
        self.seen = set()

    def call(self, method, path, expect, body=None, data=None, headers=None):
        template = template_of(path.split("?")[0])
        assert template, f"{path} is not in docs/openapi.json"
        ops = DOC["paths"][template]
        # Another method's answer (405) is documented under the path's operation.
        op_method = method.lower() if method.lower() in ops else next(iter(ops))
        op = ops[op_method]
        if body is not None and "requestBody" in op and expect < 300:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            schema_validator(schema).validate(body)
        res = requests.request(method, self.url + path, json=body, data=data,
                               headers=headers, timeout=WAIT)
        assert res.status_code == expect, f"{method} {path}: {res.status_code} {res.text}"
        self.check(template, op_method, res.status_code, res.headers, res.content)
        return res

    def check(self, template, method, status, headers, content):
        responses = DOC["paths"][template][method]["responses"]
        assert str(status) in responses, f"{method} {template}: {status} is not documented"
        documented = responses[str(status)]
        self.seen.add((template, method, str(status)))
        for name, header in documented.get("headers", {}).items():
            assert headers.get(name) == header["schema"]["const"], f"{name}: {headers}"
        kinds = documented.get("content", {})
        got_type = headers.get("Content-Type", "").split(";")[0]
        assert got_type in kinds, f"{method} {template} {status}: Content-Type {got_type}"
        if got_type == "application/json":
            schema_validator(kinds[got_type]["schema"]).validate(json.loads(content))


@pytest.fixture(scope="module")
def open_server():
    srv = Server("[Server]\nmax-payload = 2K\nbody-timeout = 1s\n[Messaging]\nhistory-size = 3\n")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def keyed_server():
    srv = Server("[Api]\nkeys = right-key\n")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def seen():
    """Every (path, method, status) answered; checked against the document at the end."""
    return set()


def wait_for(predicate):
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_open_routes(open_server, seen):
    c = Checker(open_server.url)
    sio = socketio.Client(reconnection=False)
    sio.connect(open_server.url, auth={"identity": "alice"}, namespaces=["/"], wait_timeout=WAIT)
    try:
        assert sio.call("subscribe", "chat", timeout=WAIT)["ok"] is True
        c.call("GET", "/healthz", 200)
        c.call("GET", "/readyz", 200)
        c.call("GET", "/metrics", 200)
        got = c.call("GET", "/api/openapi.json", 200)
        assert got.json() == DOC

        c.call("POST", "/api/publish", 200, body={"channel": "chat", "data": {"n": 1}})
        res = c.call("POST", "/api/publish", 200, body=[
            {"channel": "chat", "data": 1, "identity": "backend"},
            {"channel": "chat", "type": "command", "data": {"command": "ping"}},
            {"to": "alice", "data": "direct", "identity": ""},
        ])
        assert res.json()["published"] == 3
        c.call("POST", "/api/publish", 400, data=b"not json",
               headers={"Content-Type": "application/json"})
        c.call("POST", "/api/publish", 400, body=[])
        c.call("POST", "/api/publish", 400, body={"data": "no channel"})
        c.call("POST", "/api/publish", 413, body={"channel": "chat", "data": "x" * 4000})
        c.call("GET", "/api/publish", 405)

        assert wait_for(lambda: requests.get(open_server.url + "/api/channels",
                                             timeout=WAIT).json()["channels"])
        res = c.call("GET", "/api/channels", 200)
        assert {"name": "chat", "count": 1} in res.json()["channels"]
        res = c.call("GET", "/api/channels/chat", 200)
        assert res.json()["identities"] == ["alice"]
        c.call("GET", "/api/channels/nobody-here", 200)
        c.call("GET", "/api/channels/%FF", 400)

        # History: the last 3 of what "chat" got above, each with its offset.
        res = c.call("GET", "/api/channels/chat/history", 200).json()
        assert [m["data"] for m in res["messages"]] == \
            [{"n": 1}, 1, {"command": "ping", "options": None}], res
        first = res["messages"][0]["offset"]
        after = c.call("GET", f"/api/channels/chat/history?since={first}&limit=1", 200).json()
        assert after["messages"] == res["messages"][1:2] and after["more"] is True, after
        assert after["complete"] is True, after
        empty = c.call("GET", "/api/channels/nobody-here/history", 200).json()
        assert empty["messages"] == [] and empty["complete"] is True, empty
        c.call("GET", "/api/channels/chat/history?since=soon", 400)
        c.call("GET", "/api/channels/chat/history?limit=100000", 400)
        c.call("POST", "/api/channels/chat/history", 405)
        c.call("DELETE", "/api/channels", 405)
        c.call("POST", "/api/channels/chat", 405)
        c.call("POST", "/api/openapi.json", 405)
        for path in ("/healthz", "/readyz", "/metrics"):
            c.call("POST", path, 405)
    finally:
        sio.disconnect()
    seen |= c.seen


def test_slow_body_is_408(open_server, seen):
    """A publish whose body never comes: 408 after `[Server] body-timeout` (1 s here)."""
    with socket.create_connection(("127.0.0.1", open_server.port), timeout=WAIT * 2) as s:
        s.sendall(b"POST /api/publish HTTP/1.1\r\nHost: localhost\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            raw += chunk
    head, _, content = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = requests.structures.CaseInsensitiveDict(
        line.split(": ", 1) for line in lines[1:])
    assert status == 408, raw
    c = Checker(open_server.url)
    c.check("/api/publish", "post", status, headers, content)
    seen |= c.seen


def test_keys_guard_the_api_but_not_the_document(keyed_server, seen):
    c = Checker(keyed_server.url)
    c.call("GET", "/api/channels", 401)
    c.call("GET", "/api/channels/chat", 401)
    c.call("POST", "/api/publish", 401, body={"channel": "chat", "data": 1})
    wrong = {"Authorization": "Bearer wrong-key"}
    c.call("GET", "/api/channels", 403, headers=wrong)
    c.call("GET", "/api/channels/chat", 403, headers=wrong)
    c.call("POST", "/api/publish", 403, body={"channel": "chat", "data": 1}, headers=wrong)
    right = {"Authorization": "Bearer right-key"}
    c.call("GET", "/api/channels", 200, headers=right)
    c.call("GET", "/api/channels/chat/history", 401)
    c.call("GET", "/api/channels/chat/history", 403, headers=wrong)
    res = c.call("GET", "/api/channels/chat/history", 404, headers=right)
    assert "history-size" in res.json()["error"]
    c.call("GET", "/api/openapi.json", 200)
    seen |= c.seen


def test_the_document_names_every_route_and_nothing_else(open_server):
    """Paths the router has a match arm for (src/http/mod.rs, api.rs) and near misses: each
    that the server answers with anything but 404 must be documented, or be one of NOT_API."""
    candidates = [
        "/api", "/api/", "/api/publish", "/api/publish/", "/api/channels", "/api/channels/",
        "/api/channels/a/b", "/api/channel", "/api/channels/%2F", "/api/openapi.json", "/api/openapi",
        "/api/metrics", "/healthz", "/readyz", "/metrics", "/health", "/ready", "/status",
        "/openapi.json", "/index.html", "/", "/realtime.js",
    ]
    for path in candidates:
        for method in ("GET", "POST"):
            res = requests.request(method, open_server.url + path, timeout=WAIT)
            if res.status_code == 404:
                assert res.json() == {"ok": False, "error": "not found"}, path
                continue
            assert template_of(path) or path in NOT_API, \
                f"{method} {path} answers {res.status_code} but is not in docs/openapi.json"
    for template, ops in DOC["paths"].items():
        path = template.replace("{name}", "chat")
        for method in ops:
            res = requests.request(method, open_server.url + path, timeout=WAIT)
            assert res.status_code != 404, f"documented {method} {template} is not served"


def test_every_documented_answer_was_seen(seen):
    """Runs last in this file: every status of every operation was exercised above."""
    documented = {(t, m, s) for t, ops in DOC["paths"].items()
                  for m, op in ops.items() for s in op["responses"]}
    missing = documented - seen - NOT_EXERCISED
    assert not missing, f"documented but never answered: {sorted(missing)}"


def test_component_schemas_are_valid_json_schema():
    assert DOC["openapi"].startswith("3.1")
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)

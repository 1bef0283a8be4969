"""Start the realtime server binary for the Python client tests."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("REALTIME_BIN") or str(REPO_ROOT / "target" / "debug" / "realtime")
LISTEN_RE = re.compile(r"listening on \S*:(\d+)")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
STARTUP_TIMEOUT = 10.0
KILL_GRACE = 3.0


class Server:
    def __init__(self, config=None):
        if not os.path.exists(BINARY):
            raise RuntimeError(
                f"realtime binary not found at {BINARY} "
                "(build it with `cargo build`, or set REALTIME_BIN)")
        self.dir = tempfile.mkdtemp(prefix="realtime-pytest-")
        argv = [BINARY, "--port", "0"]
        if config is not None:
            path = os.path.join(self.dir, "realtime.conf")
            with open(path, "w") as f:
                f.write(config)
            argv += ["--config", path]
        env = dict(os.environ, NO_COLOR="1", RUST_BACKTRACE="1")
        # cwd: an empty temp dir, so no ./etc/realtime.conf of the checkout is used
        self.proc = subprocess.Popen(
            argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)  # own process group: stop() signals the whole group
        self._lines = []
        self._lock = threading.Lock()
        self._port_found = threading.Event()
        self.port = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._port_found.wait(STARTUP_TIMEOUT) or self.port is None:
            self.stop()
            raise RuntimeError(
                f"server did not print 'listening on ...:PORT' within {STARTUP_TIMEOUT} s "
                f"(exit code {self.proc.returncode})\n--- server output ---\n{self.log()}")
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self._lock:
                self._lines.append(line)
                if len(self._lines) > 5000:
                    del self._lines[:1000]
            if self.port is None:
                m = LISTEN_RE.search(ANSI_RE.sub("", line))
                if m:
                    self.port = int(m.group(1))
                    self._port_found.set()
        self._port_found.set()  # process ended

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def log(self):
        with self._lock:
            return "".join(self._lines)

    def stop(self):
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(KILL_GRACE)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(5)
        self._signal(signal.SIGKILL)  # leftovers of the group, if any
        self._reader.join(2)
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


@pytest.fixture(scope="module")
def server():
    srv = Server()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server's output to failing tests."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
        if srv is not None:
            report.sections.append(("realtime output", srv.log()[-20000:]))

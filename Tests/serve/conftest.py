"""Fixtures for the `vzquant serve` tests: the vzquant binary, the tiny LLaVA fixture converted to GGUF, and servers
started on free loopback ports (each test module's servers are stopped, and must still be alive, at the end)."""
import os
import pathlib
import select
import signal
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests" / "VZQuantTests" / "Fixtures"
RESULTS = ROOT / ".build" / "serve-test"


def vzquant_binary():
    path = os.environ.get("VZQUANT") or str(ROOT / ".build" / "debug" / "vzquant")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no vzquant binary at {path}: run `swift build` first (or set VZQUANT)")
    return path


@pytest.fixture(scope="session")
def vzquant():
    return vzquant_binary()


@pytest.fixture(scope="session")
def llava(vzquant, tmp_path_factory):
    """The tiny LLaVA checkpoint (vicuna template, 256 positions) converted to f32 GGUF: (text, mmproj)."""
    d = tmp_path_factory.mktemp("llava")
    text, mmproj = d / "llava.gguf", d / "mmproj.gguf"
    subprocess.run([vzquant, "convert", str(FIXTURES / "hf" / "llava-4x"), "-o", str(text), "--mmproj-out", str(mmproj),
                    "--type", "f32"], check=True, capture_output=True)
    return str(text), str(mmproj)


class Server:
    """`vzquant serve` on a free port; `url` once it listens."""

    def __init__(self, vzquant, args):
        self.process = subprocess.Popen([vzquant, "serve", "--port", "0", "--threads", "1", *args],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        deadline = time.time() + 120
        self.url = None
        while self.url is None:
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError("vzquant serve did not start:\n" + "".join(self.log) + self.process.stderr.read())
            ready, _, _ = select.select([self.process.stderr], [], [], 1)
            if ready:
                line = self.process.stderr.readline()
                self.log.append(line)
                if "listening on " in line:
                    self.url = line.split("listening on ", 1)[1].strip()
        with urllib.request.urlopen(self.url + "/health", timeout=10) as r:
            assert r.status == 200

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        alive = self.alive()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return alive


@pytest.fixture(scope="module")
def start_server(vzquant):
    servers = []

    def start(*args):
        s = Server(vzquant, [str(a) for a in args])
        servers.append(s)
        return s

    yield start
    for s in servers:
        assert s.stop(), "the server died during the tests:\n" + "".join(s.log)


@pytest.fixture(scope="session")
def results():
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS

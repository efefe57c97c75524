"""`vzquant serve` against the official `openai` client and raw HTTP, on the tiny LLaVA fixture (and SmolLM2-135M when
tools/fetch_models.sh has fetched it): answers equal `vzquant run`'s at temperature 0, a second turn prefills only its
own tokens, errors are OpenAI error objects with the right status, the queue answers 503 when full, a client that
goes away cancels its generation, 8 clients × 10 requests all get their own answers, and 200 malformed requests
leave the server serving."""
import base64
import concurrent.futures
import http.client
import json
import os
import pathlib
import socket
import statistics
import struct
import subprocess
import threading
import time
import urllib.request
import zlib

import openai
import pytest

from conftest import FIXTURES

IMAGE = FIXTURES / "images" / "photo64x48_444.jpg"
SMOLLM = pathlib.Path(os.environ.get("VZQ_MODELS", pathlib.Path.home() / ".cache" / "vzquant" / "models")) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def data_url(path):
    kind = "png" if str(path).endswith(".png") else "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(pathlib.Path(path).read_bytes()).decode()


def client(server, key="none"):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=120)


def run_cli(vzquant, model, prompt, n, *extra):
    out = subprocess.run([vzquant, "run", "-m", model, "-p", prompt, "--temp", "0", "-n", str(n), "--threads", "1", *extra],
                         check=True, capture_output=True, text=True).stdout
    assert out.endswith("\n")
    return out[:-1]


def post(server, body, headers=None, path="/v1/chat/completions", method="POST"):
    """(status, headers, parsed JSON or raw text) of one request on a fresh connection."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    c.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    r = c.getresponse()
    raw = r.read().decode()
    c.close()
    try:
        return r.status, dict(r.getheaders()), json.loads(raw)
    except json.JSONDecodeError:
        return r.status, dict(r.getheaders()), raw


@pytest.fixture(scope="module")
def server(start_server, llava):
    text, mmproj = llava
    return start_server("-m", text, "--mmproj", mmproj, "--max-queue", "16", "--max-tokens", "64")


def test_health_models_metrics(server):
    status, _, health = post(server, None, path="/health", method="GET")
    assert status == 200 and health["status"] == "ok"
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["llava"]
    status, headers, metrics = post(server, None, path="/metrics", method="GET")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "vzquant_queue_length" in metrics and "vzquant_prompt_tokens_total" in metrics


@pytest.mark.parametrize("prompt", ["Hello there", "What is in the picture? Tell me"])
def test_plain_and_streamed_equal_run(server, vzquant, llava, prompt):
    expected = run_cli(vzquant, llava[0], prompt, 12)
    c = client(server)
    r = c.chat.completions.create(model="llava", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=12)
    assert r.choices[0].message.content == expected
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 12 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    pieces, usage, finish = [], None, None
    for chunk in c.chat.completions.create(model="llava", messages=[{"role": "user", "content": prompt}], temperature=0,
                                           max_tokens=12, stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == expected
    assert finish == r.choices[0].finish_reason
    assert usage.completion_tokens == r.usage.completion_tokens and usage.prompt_tokens == r.usage.prompt_tokens


def test_image_request_equals_run(server, vzquant, llava):
    text, mmproj = llava
    expected = run_cli(vzquant, text, "Describe the image", 8, "--mmproj", mmproj, "--image", str(IMAGE), "--visual-tokens", "6")
    r = client(server).chat.completions.create(
        model="llava", temperature=0, max_tokens=8, extra_body={"visual_tokens": 6},
        messages=[{"role": "user", "content": [{"type": "text", "text": "Describe the image"},
                                                {"type": "image_url", "image_url": {"url": data_url(IMAGE)}}]}])
    assert r.choices[0].message.content == expected
    v = r.to_dict()["usage"]["vzquant"]
    assert v["visual_tokens_after"] == 6 and v["visual_tokens_before"] > 6
    # VisionZip off: every visual token reaches the model.
    r = client(server).chat.completions.create(
        model="llava", temperature=0, max_tokens=2, extra_body={"visual_tokens": "all"},
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(IMAGE)}},
                                                {"type": "text", "text": "Describe the image"}]}])
    v = r.to_dict()["usage"]["vzquant"]
    assert v["visual_tokens_after"] == v["visual_tokens_before"] - 1  # LLaVA drops CLS


def test_second_turn_prefills_only_its_own_tokens(server):
    c = client(server)
    first = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(IMAGE)}},
                                          {"type": "text", "text": "What is this?"}]}]
    r1 = c.chat.completions.create(model="llava", messages=first, temperature=0, max_tokens=6, extra_body={"visual_tokens": 6})
    u1 = r1.to_dict()["usage"]
    assert u1["prompt_tokens_details"]["cached_tokens"] == 0
    second = first + [{"role": "assistant", "content": r1.choices[0].message.content},
                      {"role": "user", "content": "And its colour?"}]
    r2 = c.chat.completions.create(model="llava", messages=second, temperature=0, max_tokens=6, extra_body={"visual_tokens": 6})
    u2 = r2.to_dict()["usage"]
    cached = u2["prompt_tokens_details"]["cached_tokens"]
    assert cached == u1["prompt_tokens"] + u1["completion_tokens"]
    assert u2["vzquant"]["prefill_tokens"] == u2["prompt_tokens"] - cached
    assert u2["vzquant"]["prefill_tokens"] < u1["prompt_tokens"]  # the new message only: no image rows, no first turn
    assert u2["vzquant"]["visual_tokens_before"] == 0  # the image was not encoded again
    # A conversation that does not extend the cached one is prefilled whole.
    r3 = c.chat.completions.create(model="llava", messages=[{"role": "user", "content": "Something else"}], temperature=0, max_tokens=2)
    assert r3.to_dict()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    # Sent again after another conversation, the two turns are prefilled whole, the image encoded again. (The reply
    # is re-tokenized from its text then, so the count may differ from the cached tokens: this random model's text
    # holds replacement characters for split UTF-8.)
    r4 = c.chat.completions.create(model="llava", messages=second, temperature=0, max_tokens=6, extra_body={"visual_tokens": 6})
    u4 = r4.to_dict()["usage"]
    assert u4["prompt_tokens_details"]["cached_tokens"] == 0 and u4["vzquant"]["visual_tokens_after"] == 6
    assert u4["vzquant"]["prefill_tokens"] == u4["prompt_tokens"] > u1["prompt_tokens"]


def test_errors_are_openai_error_objects(server):
    long_prompt = "word " * 400  # more than the fixture's 256 positions
    cases = [
        (b'{"messages": [', 400, None),
        ({"messages": "hi"}, 400, "messages"),
        ({}, 400, "messages"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
        ({"messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**30}, 400, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}, 400, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}, 400, None),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n"),
        ({"messages": [{"role": "user", "content": "hi"}], "token_reducer": "magic"}, 400, "token_reducer"),
        ({"messages": [{"role": "user", "content": "hi"}], "visual_tokens": "lots"}, 400, "visual_tokens"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}]}]},
         400, "messages[0].content[0].image_url"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}]},
         400, "messages[0].content[0].image_url"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]},
         400, "messages[0].content[0].image_url"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,"
                                                                                             + base64.b64encode(b"not an image").decode()}}]}]},
         400, None),
        ({"messages": [{"role": "user", "content": long_prompt}]}, 400, None),
    ]
    for body, status, param in cases:
        got, _, answer = post(server, body)
        assert got == status, (body if isinstance(body, bytes) else json.dumps(body)[:200], answer)
        error = answer["error"]
        assert error["type"] == "invalid_request_error" and error["message"], answer
        if param:
            assert error["param"] == param, answer
    got, _, answer = post(server, {"messages": [{"role": "user", "content": long_prompt}]})
    assert answer["error"]["code"] == "context_length_exceeded"
    assert post(server, None, path="/v1/nothing", method="GET")[0] == 404
    assert post(server, None, path="/v1/nothing", method="GET")[2]["error"]["type"] == "not_found_error"
    # The server still answers.
    assert client(server).chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}], max_tokens=2).choices


def test_limits_api_key_and_queue(start_server, llava, vzquant):
    text, mmproj = llava
    s = start_server("-m", text, "--mmproj", mmproj, "--api-key", "sesame", "--max-body-bytes", "60000",
                     "--max-image-bytes", "20000", "--max-decode-pixels", "1000", "--max-tokens", "200", "--max-queue", "1")
    good = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert post(s, good)[0] == 401
    status, headers, answer = post(s, good, {"Authorization": "Bearer wrong"})
    assert status == 401 and answer["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        client(s, "nope").chat.completions.create(model="x", messages=good["messages"], max_tokens=2)
    assert client(s, "sesame").chat.completions.create(model="x", messages=good["messages"], max_tokens=2).choices
    assert post(s, None, path="/health", method="GET")[0] == 200  # no key needed
    auth = {"Authorization": "Bearer sesame"}
    assert post(s, None, {}, path="/metrics", method="GET")[0] == 401
    assert post(s, None, auth, path="/metrics", method="GET")[0] == 200
    # body over --max-body-bytes
    big = {"messages": [{"role": "user", "content": "x" * 70000}]}
    status, _, answer = post(s, big, auth)
    assert status == 413 and answer["error"]["type"] == "request_too_large"
    # image bytes over --max-image-bytes (the body itself is under its limit)
    blob = "data:image/jpeg;base64," + base64.b64encode(os.urandom(30000)).decode()
    status, _, answer = post(s, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": blob}}]}]}, auth)
    assert status == 413 and answer["error"]["code"] == "image_too_large"
    # image pixels over --max-decode-pixels: 64×48 = 3072 > 1000
    status, _, answer = post(s, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(FIXTURES / "images" / "gray64x48.png")}}]}]}, auth)
    assert status == 413 and "pixels" in answer["error"]["message"]
    # max_tokens over --max-tokens
    assert post(s, {**good, "max_tokens": 201}, auth)[0] == 400
    # queue: one running, one waiting, the rest 503 with Retry-After
    statuses, retry = [], []
    def one():
        st, h, _ = post(s, {"messages": [{"role": "user", "content": "count to a hundred"}], "max_tokens": 200,
                            "temperature": 1.0, "seed": 1}, auth)
        statuses.append(st)
        if st == 503:
            retry.append(h.get("Retry-After"))
    # The first request must be running before the others come: until the worker takes it, it is the one waiting,
    # and on a loaded machine that can outlast all five (each then gets 503).
    threads = [threading.Thread(target=one) for _ in range(6)]
    threads[0].start()
    deadline = time.monotonic() + 30
    while not post(s, None, path="/health", method="GET")[2].get("busy") and time.monotonic() < deadline:
        time.sleep(0.01)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(200) >= 2 and statuses.count(503) >= 1, statuses
    assert set(statuses) <= {200, 503}, statuses
    assert all(r and int(r) >= 1 for r in retry), retry


def test_concurrent_clients(server, results):
    """8 clients × 10 requests, each prompt its own: every answer arrives and is the one for its prompt."""
    prompts = {(i, j): f"Client {i} asks question {j}" for i in range(8) for j in range(10)}
    c = client(server)
    expected = {}
    for key, p in prompts.items():
        expected[key] = c.chat.completions.create(model="x", messages=[{"role": "user", "content": p}], temperature=0,
                                                  max_tokens=4).choices[0].message.content
    latencies, answers, errors = [], {}, []
    def worker(i):
        mine = client(server)
        for j in range(10):
            t0 = time.perf_counter()
            try:
                stream = j % 2 == 1
                args = dict(model="x", messages=[{"role": "user", "content": prompts[(i, j)]}], temperature=0, max_tokens=4)
                if stream:
                    text = "".join(ch.choices[0].delta.content or "" for ch in mine.chat.completions.create(stream=True, **args) if ch.choices)
                else:
                    text = mine.chat.completions.create(**args).choices[0].message.content
                answers[(i, j)] = text
            except Exception as e:  # noqa: BLE001 — every failure is reported below
                errors.append(f"{i},{j}: {e!r}")
            latencies.append(time.perf_counter() - t0)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert not errors, errors
    assert answers == expected
    q = statistics.quantiles(latencies, n=20)
    summary = {"requests": len(latencies), "p50_ms": round(statistics.median(latencies) * 1000, 1), "p95_ms": round(q[18] * 1000, 1),
               "max_ms": round(max(latencies) * 1000, 1)}
    (results / "load.json").write_text(json.dumps(summary))
    print(f"\nload: 8 clients x 10 requests: {summary}")


def raw_exchange(server, payload, timeout=10):
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    return data


def test_malformed_requests_leave_the_server_serving(server, results):
    bodies = [
        b'{"messages": [{"role": "user", "content": "hi"}', b"", b"null", b"[]", b'"text"', b"{}}", b"\xff\xfe\x00garbage",
        b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e999}',
        b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}',
        b'{"messages": [{"role": "user", "content": "hi"}], "seed": 123456789012345678901234567890}',
        b'{"messages": [{"role": "user", "content": "hi"}], "top_p": 0}',
        b'{"messages": [{"role": "user", "content": "hi"}], "stop": [1, 2]}',
        b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["", "x"]}',
        b'{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
        b'{"messages": [{"role": 7, "content": "hi"}]}',
        b'{"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]}',
        b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
        b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}',
        b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/plain;base64,AAAA"}}]}]}',
        b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}]}',
        b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}',
        b'{"messages": [{"role": "user", "content": "<image> and <image>"}]}',
        b'{"messages": [{"role": "user", "content": "hi"}], "visual_tokens": -3}',
        b'{"messages": [{"role": "user", "content": "hi"}], "visual_tokens": 1.5}',
        b'{"messages": [' + b'{"role": "user", "content": "a"},' * 50 + b'{"role": "assistant", "content": "b"}]}',
        b'{"messages": [{"role": "user", "content": "hi"}]' + b" " * 10 + b"," + b'"x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ]
    # A decompression bomb: a PNG header claiming 100000×100000 pixels (413 from the header, nothing allocated).
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    bodies.append(json.dumps({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(bomb).decode()}}]}]}).encode())
    truncated_png = data_url(FIXTURES / "images" / "gray64x48.png")[:400]
    bodies.append(json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": truncated_png}}]}]}).encode())
    statuses = {}
    n = 0
    while n < 170:
        body = bodies[n % len(bodies)]
        status, _, answer = post(server, body)
        assert 400 <= status < 500, (body[:120], status, answer)
        assert isinstance(answer, dict) and answer["error"]["message"], (body[:120], answer)
        statuses[status] = statuses.get(status, 0) + 1
        n += 1
    # Broken HTTP itself: the server closes or answers 4xx, and goes on.
    raws = [b"GARBAGE\r\n\r\n", b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"mess",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
            b"GET / HTTP/9.9\r\n\r\n", b"\x00" * 1000, b"POST /v1/chat/completions HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n"]
    while n < 200:
        reply = raw_exchange(server, raws[n % len(raws)])
        assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply[:200]
        n += 1
    assert server.alive()
    r = client(server).chat.completions.create(model="x", messages=[{"role": "user", "content": "Still there?"}], max_tokens=3)
    assert r.choices[0].message.content is not None
    print(f"\nmalformed: {n} requests, statuses {statuses}, then a good request answered")


@pytest.mark.skipif(not SMOLLM.exists(), reason="SmolLM2-135M not fetched (tools/fetch_models.sh)")
def test_client_that_goes_away_cancels_generation(start_server):
    s = start_server("-m", SMOLLM, "--max-tokens", "2000", "--ctx-size", "2048")
    host, port = s.url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}],
                       "max_tokens": 2000, "temperature": 0.9, "seed": 3, "stream": True}).encode()
    for stream in (True, False):
        payload = body.replace(b'"stream": true', b'"stream": %s' % (b"true" if stream else b"false"))
        sock = socket.create_connection((host, int(port)), timeout=60)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
        if stream:
            head = sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200"), head  # the headers and first chunk: generation is under way
        else:
            time.sleep(1.0)
        sock.close()
        t0 = time.time()
        # The engine is free again long before 2000 tokens could be generated.
        while json.loads(urllib.request.urlopen(s.url + "/health").read())["busy"]:
            assert time.time() - t0 < 15, "the generation went on after the client left"
            time.sleep(0.1)
    metrics = urllib.request.urlopen(s.url + "/metrics").read().decode()
    cancelled = [l for l in metrics.splitlines() if l.startswith("vzquant_requests_cancelled_total")]
    assert cancelled and float(cancelled[0].split()[-1]) == 2, metrics
    completion = [l for l in metrics.splitlines() if l.startswith("vzquant_completion_tokens_total")]
    assert float(completion[0].split()[-1]) < 1000, completion

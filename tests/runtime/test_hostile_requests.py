"""Hostile request lines against the real worker (``cach serve --stdio --no-preload``): a number
longer than Python reads, lines over the 1 MiB cap, bytes that are not UTF-8, and a seeded,
time-bounded fuzz of the request parser. Every line gets exactly one answer (a result or a coded
error that quotes at most a few dozen characters of it), and the worker answers ``status`` after.

None of these lines starts the job process: the front answers them all, so no model loads.
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time

import pytest

from model_runtime.paths import PLUGIN_ROOT
from model_runtime.protocol import (
    ERROR_CODES,
    LONG_OPS,
    MAX_REQUEST_BYTES,
    OPS,
    ProtocolError,
    parse_request,
)

TIMEOUT_S = 60.0
#: an error message may quote this much of a request, no more
MAX_MESSAGE_CHARS = 400


class RawWorker:
    """``cach serve --stdio --no-preload`` spoken to in bytes, so any line can be sent."""

    def __init__(self, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "model_runtime.cli", "serve", "--stdio", "--no-preload"],
            cwd=PLUGIN_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env={**os.environ, "CACH_DEVICE": "cpu", **(env or {})})
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.next()
        assert ready["event"] == "ready", ready

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def next(self, timeout: float = TIMEOUT_S) -> dict:
        raw = self.lines.get(timeout=timeout)
        assert raw is not None, f"worker exited with {self.proc.poll()}"
        assert len(raw) < 16_384, f"an answer of {len(raw)} bytes: a request was echoed"
        return json.loads(raw)  # every stdout line is JSON

    def answers_until_status(self, probe: str) -> list[dict]:
        """Answers before the ``status`` response of id ``probe`` (which is sent now)."""
        self.send_raw(json.dumps({"id": probe, "op": "status"}).encode() + b"\n")
        got = []
        while True:
            msg = self.next()
            if msg.get("id") == probe and msg.get("ok"):
                assert "models_loaded" in msg["result"]
                return got
            got.append(msg)

    def close(self) -> None:
        try:
            self.send_raw(b'{"id": "bye", "op": "shutdown"}\n')
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def worker():
    w = RawWorker()
    yield w
    w.close()


def _one_coded_error(answers: list[dict], code: str | None = None) -> dict:
    assert len(answers) == 1, answers
    msg = answers[0]
    assert msg["ok"] is False and msg["error"]["code"] in ERROR_CODES, msg
    assert msg["error"]["code"] != "internal", msg
    assert len(msg["error"]["message"]) < MAX_MESSAGE_CHARS, msg
    if code is not None:
        assert msg["error"]["code"] == code, msg
    return msg


@pytest.mark.parametrize("field", ["id", "k"])
def test_a_number_longer_than_python_reads_is_bad_json(worker, field):
    huge = "9" * 5000
    line = ('{"id": ' + huge + ', "op": "status"}' if field == "id"
            else '{"id": 1, "op": "search", "params": {"index": "/x", "text": "a", "k": ' + huge
            + "}}")
    worker.send_raw(line.encode() + b"\n")
    msg = _one_coded_error(worker.answers_until_status(f"after-{field}"), "bad_json")
    assert "99999" not in msg["error"]["message"]


def test_invalid_utf8_is_bad_json_not_replacement_characters(worker):
    worker.send_raw(b'{"id": "u", "op": "st\xffatus"}\n')
    msg = _one_coded_error(worker.answers_until_status("after-utf8"), "bad_json")
    assert "UTF-8" in msg["error"]["message"]


def test_a_line_over_the_cap_is_refused_unread_and_not_echoed(worker):
    line = b'{"id": "big", "op": "' + b"x" * (MAX_REQUEST_BYTES + 10) + b'"}\n'
    started = time.monotonic()
    worker.send_raw(line)
    msg = _one_coded_error(worker.answers_until_status("after-big"), "bad_json")
    assert "xxxx" not in msg["error"]["message"]
    assert f"{MAX_REQUEST_BYTES:,}" in msg["error"]["message"]
    assert time.monotonic() - started < 10
    # a line just under the cap is read and answered for what it is
    ok_line = b'{"id": "fit", "op": "' + b"y" * (MAX_REQUEST_BYTES - 40) + b'"}\n'
    worker.send_raw(ok_line)
    msg = _one_coded_error(worker.answers_until_status("after-fit"), "unknown_op")
    assert msg["id"] == "fit" and "yyyy..." in msg["error"]["message"]


def test_a_50_mb_line_is_answered_fast_with_bounded_memory(worker):
    """Read in chunks and discarded: the front process does not grow by the line's size."""
    rss_before = _rss_kib(worker.proc.pid)
    chunk = b"z" * (1 << 20)
    worker.send_raw(b'{"id": "huge", "op": "')
    for _ in range(50):
        worker.send_raw(chunk)
    worker.send_raw(b'"}\n')
    msg = _one_coded_error(worker.answers_until_status("after-huge"), "bad_json")
    assert "52,428,8" in msg["error"]["message"]
    assert _rss_kib(worker.proc.pid) - rss_before < 20_000


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


@pytest.mark.parametrize("op, params", [
    ("search", {"index": "/tmp/a\u0000b", "text": "x"}),
    ("index", {"index": "/tmp/idx", "paths": ["/data", "/da\u0000ta"]}),
    ("caption", {"image": "/tmp/q\u0000.png"}),
    ("adapt", {"index": "/tmp/idx", "steps": -5}),
    ("adapt", {"index": "/tmp/idx", "steps": 0}),
    ("search", {"index": "", "text": "x"}),
])
def test_a_nul_byte_in_a_path_and_steps_below_one_are_bad_params(worker, op, params):
    """Refused by the front before a job process starts (was: 'internal' from the job)."""
    worker.send_raw(json.dumps({"id": "p", "op": op, "params": params}).encode() + b"\n")
    msg = _one_coded_error(worker.answers_until_status(f"after-{op}"), "bad_param")
    assert msg["id"] == "p"


def test_status_after_a_search_and_a_file_name_that_is_not_utf8(tmp_path):
    """A folder holding a file whose name is not UTF-8 is indexed and searched through the
    worker (the name comes back as JSON \\udcXX escapes, one answer per request), and
    ``status`` right after shows the model the jobs loaded (was one job late: [])."""
    from model_runtime.paths import SAMPLES_DIR

    src = tmp_path / "src"
    src.mkdir()
    odd = os.fsencode(src) + b"/caf\xe9.tif"
    with open(SAMPLES_DIR / "cogeo.tif", "rb") as fin, open(odd, "wb") as fout:
        fout.write(fin.read())
    w = RawWorker(env={"CACH_CACHE": str(tmp_path / "cache")})
    try:
        index = str(tmp_path / "idx")
        for rid, op, params in [
            ("I", "index", {"index": index, "paths": [str(src)], "tile_size": 256}),
            ("S", "search", {"index": index, "text": "houses", "k": 2}),
        ]:
            w.send_raw(json.dumps({"id": rid, "op": op, "params": params}).encode() + b"\n")
            while True:
                msg = w.next(timeout=300)
                if msg.get("id") == rid and "ok" in msg:
                    break
            assert msg["ok"], msg
            if op == "index":
                assert msg["result"]["skipped"] == [] and msg["result"]["tiles"] > 0
                w.send_raw(b'{"id": "st", "op": "status"}\n')
                status = w.next()
                assert status["id"] == "st" and status["result"]["models_loaded"], status
        assert {h["source"] for h in msg["result"]["results"]} == {os.fsdecode(odd)}
    finally:
        w.close()


# --- fuzz ----------------------------------------------------------------------------------------
_VALID = [
    {"id": 1, "op": "status"},
    {"id": "c", "op": "cancel", "params": {"target": 5}},
    {"id": 2, "op": "search", "params": {"index": "/nope", "text": "harbour", "k": 5}},
    {"id": 3, "op": "index", "params": {"index": "/nope", "paths": ["/a"], "tile_size": 96}},
    {"id": 4, "op": "caption", "params": {"image": "/x.png", "k": 3}},
    {"id": 5, "op": "locate", "params": {"index": "/nope", "x": 1.5, "y": 2}},
    {"id": 6, "op": "adapt", "params": {"index": "/nope", "steps": 3}},
]
_NASTY = [
    "9" * 4400, "-" + "1" * 5000, "1e999999", "NaN", "Infinity", "-0", "1.5", "true", "null",
    '"\\ud800"', '"\\u0000"', '"a\\u0000b"', "[" * 3000 + "]" * 3000, "{}", "[]",
    '"' + "w" * 5000 + '"', str(2**63), str(-(2**63) - 1), '{"a": ' * 500 + "1" + "}" * 500,
]


def _mutant(rng: random.Random) -> bytes:
    """One adversarial line (no newline in it)."""
    pick = rng.random()
    if pick < 0.2:  # random bytes
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    elif pick < 0.45:  # a valid request with a value swapped for something nasty
        obj = json.loads(json.dumps(rng.choice(_VALID)))
        text = json.dumps(obj)
        target = rng.choice(["1", "5", "3", '"c"', '"harbour"', '"/nope"', "96", "1.5", '"status"'])
        data = text.replace(target, rng.choice(_NASTY), 1).encode()
    elif pick < 0.65:  # a valid request cut, or with bytes flipped
        data = bytearray(json.dumps(rng.choice(_VALID)).encode())
        for _ in range(rng.randrange(1, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data[: rng.randrange(1, len(data) + 1)])
    elif pick < 0.8:  # odd ops and params
        op = rng.choice([*OPS, "", "STATUS", "status ", "__class__", "\u202e", 7, None, []])
        params = rng.choice([None, [], "x", 1, {"": 1}, {"target": []}, {"index": 1},
                             {"x" * 200: 1}, {"k": -1}, {"tile": 2**64}])
        data = json.dumps({"id": rng.choice([1, "a", None, 1.5, [], {}, True]), "op": op,
                           "params": params}).encode()
    else:  # nasty scalars and structures as the whole line
        data = rng.choice(_NASTY).encode()
    return data.replace(b"\n", b" ")


def _answers_expected(line: bytes) -> int | None:
    """1 for a line the front answers at once, 0 for a blank line, None to leave a line out
    (a valid long op would start the job process; a valid shutdown would stop the worker)."""
    if not line.strip():
        return 0
    try:
        request = parse_request(line.strip())
    except ProtocolError:
        return 1
    return None if request.op in LONG_OPS or request.op == "shutdown" else 1


def test_fuzzed_lines_each_get_one_coded_answer(worker):
    rng = random.Random(1604)
    deadline = time.monotonic() + 40.0
    sent = 0
    while sent < 400 and time.monotonic() < deadline:
        line = _mutant(rng)
        expected = _answers_expected(line)
        if expected is None:
            continue
        worker.send_raw(line + b"\n")
        answers = worker.answers_until_status(f"probe-{sent}")
        assert len(answers) == expected, (line[:200], answers)
        for msg in answers:
            assert "ok" in msg and (msg["id"] is None or isinstance(msg["id"], (int, str))), msg
            if not msg["ok"]:
                _one_coded_error([msg])
        sent += 1
    assert sent >= 100, f"only {sent} fuzz lines in the time allowed"
    assert worker.proc.poll() is None


def test_the_parser_answers_every_fuzzed_line_with_a_coded_error_or_a_request():
    """The same mutations, many more, in process: no exception but ProtocolError escapes."""
    rng = random.Random(2026)
    deadline = time.monotonic() + 15.0
    parsed = 0
    while parsed < 5000 and time.monotonic() < deadline:
        parsed += 1
        line = _mutant(rng)
        try:
            request = parse_request(line)
        except ProtocolError as err:
            assert err.code in ERROR_CODES and err.kind == "protocol"
            assert len(str(err)) < MAX_MESSAGE_CHARS, str(err)[:500]
        else:
            assert request.op in OPS
    assert parsed > 500

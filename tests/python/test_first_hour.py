"""What a new user meets in the first hour (issue 19): the CLI keeps an existing recording when
the source fails, ends quietly when its output pipe closes, and the Python package says what a
live source is waiting for, takes file objects, and installs what `msg.load()` needs."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dmapickle
from conftest import PYTHON, ROOT, free_port


# --- record never loses an existing recording ---------------------------------------------


@pytest.fixture
def recording(start_device, tmp_path) -> Path:
    rec = tmp_path / "source.rec"
    start_device("--to", f"file:{rec}", "--count", "5", "--rows", "16").wait()
    return rec


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60, **kw)


def test_record_keeps_an_existing_file_when_the_source_fails(cli, recording, tmp_path):
    keep = tmp_path / "keep.rec"
    keep.write_bytes(os.urandom(108_615))
    before = keep.read_bytes()
    for bad in (tmp_path / "no-such.rec", f"tcp://127.0.0.1:{free_port()}"):
        for flags in ([], ["--force"], ["--append"]):
            out = run(cli, "record", "--no-reconnect", *flags, bad, keep)
            assert out.returncode == 2, out
            assert keep.read_bytes() == before, (bad, flags)
    # Nothing left beside it either (the temporary file is removed).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.rec", "source.rec"]


def test_record_refuses_to_overwrite_without_force(cli, recording, tmp_path):
    keep = tmp_path / "keep.rec"
    keep.write_bytes(b"an earlier recording")
    out = run(cli, "record", recording, keep)
    assert out.returncode == 2, out
    assert "keep.rec exists (20 B): pass --force to replace it" in out.stderr, out.stderr
    assert keep.read_bytes() == b"an earlier recording"
    out = run(cli, "record", "--append", recording, keep)
    assert out.returncode == 0, out
    assert keep.read_bytes() == b"an earlier recording" + recording.read_bytes()
    out = run(cli, "record", "--force", recording, keep)
    assert out.returncode == 0, out
    assert keep.read_bytes() == recording.read_bytes()


def test_record_interrupted_before_any_byte_leaves_the_file_alone(cli, tmp_path):
    keep = tmp_path / "keep.rec"
    keep.write_bytes(b"old")
    # Nothing listens there: the source waits (reconnecting) until Ctrl-C.
    proc = subprocess.Popen(
        [cli, "record", "--force", f"tcp://127.0.0.1:{free_port()}", str(keep)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "recorded nothing (interrupted): " in out and "keep.rec not written" in out, out
    assert keep.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.rec"]


def test_record_to_stdout_is_the_recording_only(cli, recording):
    out = subprocess.run([cli, "record", str(recording), "-"], capture_output=True, timeout=60)
    assert out.returncode == 0, out
    assert out.stdout == recording.read_bytes(), "the summary line went to stderr, not into the recording"
    size = len(out.stdout)
    assert out.stderr.decode().startswith(f"recorded {size} B to - (source ended)"), out.stderr


# --- a closed output pipe ends the CLI quietly ----------------------------------------------


def test_closed_output_pipes_end_quietly(cli, start_device):
    dev = start_device(
        "--to", "tcp-listen:127.0.0.1:0", "--count", "100000", "--rows", "4", "--interval-ms", "5"
    )
    # stderr into a pipe whose reader stops after one line (`2>&1 | head -1`): the next stats
    # line cannot be written. The CLI ends as `cat` would (SIGPIPE, status 141), no panic (101).
    script = f"{cli} listen --quiet tcp://{dev.address} 2>&1 >/dev/null | head -1; echo ${{PIPESTATUS[0]}}"
    out = run("bash", "-c", script)
    lines = out.stdout.splitlines()
    assert lines[-1] == "141", out
    assert "panicked" not in out.stdout + out.stderr


def test_listen_ends_when_its_stdout_reader_has_gone(cli, start_device):
    # `listen | head -1` on a live source: the message lines have nowhere to go, so listen
    # ends (SIGPIPE status) instead of reading the device forever.
    dev = start_device(
        "--to", "tcp-listen:127.0.0.1:0", "--count", "100000", "--rows", "4", "--interval-ms", "5"
    )
    script = f"{cli} listen tcp://{dev.address} 2>/dev/null | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}"
    out = run("bash", "-c", script)
    assert out.stdout.splitlines()[-1] == "141", out


def test_replay_waiting_for_a_reader_ends_on_ctrl_c(cli, recording):
    port = free_port()
    p = subprocess.Popen(
        [str(cli), "replay", str(recording), "--to", f"tcp-listen://127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert "interrupted before a reader connected" in err


def test_a_closed_stderr_does_not_end_up_in_the_recording(cli, recording, tmp_path):
    # `2>&-`: the recording must not become file descriptor 2 and collect the CLI's messages.
    rec = tmp_path / "copy.rec"
    out = run("bash", "-c", f"{cli} record {recording} {rec} 2>&-")
    assert out.returncode == 0, out
    assert rec.read_bytes() == recording.read_bytes()
    bad = run("bash", "-c", f"{cli} record {tmp_path / 'missing.rec'} {tmp_path / 'x.rec'} 2>&-")
    assert bad.returncode == 2, bad


# --- a live source that waits says so --------------------------------------------------------


def test_a_source_without_a_device_warns_once_what_it_waits_for():
    with dmapickle.open(f"tcp://127.0.0.1:{free_port()}") as stream:
        with pytest.warns(dmapickle.WaitingWarning) as caught:
            with pytest.raises(TimeoutError):
                stream.next(timeout=3)
            with pytest.raises(TimeoutError):
                stream.next(timeout=0.5)
    assert len(caught) == 1, [str(w.message) for w in caught]
    text = str(caught[0].message)
    assert "no device after 2 s" in text and "still trying to connect" in text, text
    assert "refused" in text.lower(), text


def test_a_silent_connected_source_warns_once():
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with dmapickle.open(f"tcp://127.0.0.1:{port}") as stream:
            with pytest.warns(dmapickle.WaitingWarning, match="connected, but no message after 2 s"):
                with pytest.raises(TimeoutError):
                    stream.next(timeout=2.5)


def test_ctrl_c_ends_a_waiting_stream_cleanly():
    script = (
        "import dmapickle\n"
        f"with dmapickle.open('tcp://127.0.0.1:{free_port()}') as stream:\n"
        "    for msg in stream:\n"
        "        pass\n"
    )
    proc = subprocess.Popen([PYTHON, "-c", script], stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()  # the warning, after 2 s
    assert "WaitingWarning" in first and "no device after 2 s" in first, first
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    rest = proc.communicate(timeout=10)[1]
    assert time.monotonic() - start < 3, "Ctrl-C ended the stream promptly"
    assert proc.returncode in (-signal.SIGINT, 1, 130), (proc.returncode, rest)
    assert rest.rstrip().endswith("KeyboardInterrupt"), rest
    assert "WaitingWarning" not in rest and "Exception ignored" not in rest, rest


# --- the package's surface ---------------------------------------------------------------------


def test_read_frame_takes_bytes_or_a_binary_file(recording, tmp_path):
    data = recording.read_bytes()
    for frame in (data, bytearray(data), memoryview(data), io.BytesIO(data)):
        msg = dmapickle.read_frame(frame)
        assert msg.seq == 0 and msg.load()["adc"].shape == (16, 4)
    with open(recording, "rb") as f:
        assert dmapickle.loads(f)["seq"] == 0
    with pytest.raises(TypeError, match=r"takes a frame's bytes .* or a binary file object"):
        dmapickle.read_frame("not bytes")
    with open(recording, encoding="latin-1") as text:
        with pytest.raises(TypeError, match="needs a binary file"):
            dmapickle.read_frame(text)


def test_dir_shows_the_public_api_only():
    names = [n for n in dir(dmapickle) if not n.startswith("_")]
    assert names == sorted(dmapickle.__all__)
    for name in ("Any", "Optional", "Union", "collections", "io", "pickle"):
        assert name not in names
    for name in dmapickle.__all__:
        assert hasattr(dmapickle, name), name


def test_the_package_depends_on_numpy():
    from importlib.metadata import requires

    # pip install ./host brings numpy, which msg.load() needs for arrays.
    assert any(r.replace(" ", "").startswith("numpy>=1.26") for r in requires("dmapickle") or [])


# --- the ZeroMQ bridge waits for its subscribers ---------------------------------------------


def test_bridge_waits_for_a_subscriber_before_publishing_a_recording(cli, start_device, tmp_path):
    import pickle

    import zmq

    rec = tmp_path / "fifty.rec"
    start_device("--to", f"file:{rec}", "--count", "50", "--rows", "8").wait()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bridge = subprocess.Popen(
        [cli, "bridge", str(rec), "--zmq-pub", endpoint, "--wait-subscribers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "publishing on" in bridge.stderr.readline()
        assert "waiting for 1 subscriber(s)" in bridge.stderr.readline()
        time.sleep(0.5)  # a subscriber that starts late: without the wait, all 50 were gone
        assert bridge.poll() is None, "the bridge waits instead of publishing to nobody"
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.connect(endpoint)
        sub.subscribe(b"data/")
        sub.rcvtimeo = 10_000
        seqs = []
        for _ in range(50):
            frames = sub.recv_multipart(copy=False)
            msg = pickle.loads(frames[1], buffers=[f.buffer for f in frames[2:]])
            seqs.append(msg["seq"])
        sub.close(0)
        ctx.term()
        out, err = bridge.communicate(timeout=30)
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait()
    assert seqs == list(range(50))
    assert bridge.returncode == 0, err
    assert "subscriber 1 of 1 joined" in err, err
    assert out.startswith("final (source ended): published 50, 50 msgs"), out

"""`dmapickle bridge --allow-control`: the ZeroMQ bridge's opt-in command path, against the
firmware in QEMU over its UART (a real device, real libzmq on both ends). Without the flag no
command reaches the device, whatever a ZeroMQ client sends; with it, `dmapickle.bridge_control`
(the `stream.device` API over a REQ socket) sets the rate once, every bridged message before and
after checked against the waveform with the setting in force; malformed requests get a clear
error reply and the stream keeps flowing, nothing lost.
"""
import re
import socket
import subprocess

import numpy as np
import pytest
import zmq

from builds import cli_exe
from dmapickle import zmq as dmz
from hil_control import RETRY_ZEROS, Timeline, dmapickle
from waveform import expected_blocks

__all__ = ["dmapickle"]  # the package fixture, hil_control's


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bridge(dmapickle_start):
    """`bridge(*more_args, **boot_params)`: the firmware in QEMU and `dmapickle bridge` pushing its
    stream to a PULL socket; returns `(board, proc, pull socket, control endpoint)`. Every
    bridge started is killed at the end."""
    procs, ctx = [], zmq.Context()

    def start(*more, **params):
        board = dmapickle_start(**params)
        data, ctl = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
        args = [a.replace("CTL", ctl) for a in more]
        proc = subprocess.Popen([cli_exe(), "bridge", board.source, "--no-reconnect",
                                 "--zmq-push", data, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return board, proc, dmz.pull(data, context=ctx), ctl

    yield start
    for p in procs:
        p.kill()
        p.communicate()
    ctx.destroy(linger=0)


class Bridged:
    """Reads bridged messages and checks each against the timeline: device seq continuity
    (from the first one), rate_hz, t_us, shape and every sample."""

    def __init__(self, pull, timeline):
        self.pull, self.timeline, self.next_seq = pull, timeline, None

    def read_until(self, seq_end):
        while self.next_seq is None or self.next_seq < seq_end:
            assert self.pull.poll(60_000), f"nothing bridged after seq {self.next_seq}"
            msg = dmz.Message(self.pull.recv_multipart(copy=False))
            if msg.header.kind != dmz.DATA:
                continue
            seq = msg.header.device_seq
            assert self.next_seq is None or seq == self.next_seq, (seq, self.next_seq)
            assert msg.header.link_lost == 0 and msg.header.refused == 0, msg.header
            obj = msg.load()
            rows, rate, t_us = self.timeline.at(seq)
            assert (obj["seq"], obj["rate_hz"], obj["t_us"]) == (seq, rate, t_us), (obj, rate)
            np.testing.assert_array_equal(obj["adc"], expected_blocks([seq], rows)[0])
            self.next_seq = seq + 1


def test_without_allow_control_nothing_is_forwarded(bridge, dmapickle):
    rows, rate = 64, 64_000
    board, proc, pull, ctl = bridge(n=rows, rate=rate)
    got = Bridged(pull, Timeline(rows, rate))
    got.read_until(50)
    # Nothing listens for commands: a client's request is never answered...
    dev = dmapickle.bridge_control(ctl, timeout=1.0)
    with pytest.raises(TimeoutError, match="no reply from the bridge"):
        dev.set(rate_hz=32_000)
    got.read_until(got.next_seq + 100)
    proc.kill()
    _, err = proc.communicate()
    # ...and never reaches the device: the stream kept its rate, the device saw no command.
    assert "--allow-control" not in err, err
    assert "command" not in board.log(), board.log()


def test_allow_control_applies_a_set_once_and_refuses_malformed_requests(bridge, dmapickle):
    rows, rate = 64, 64_000
    board, proc, pull, ctl = bridge("--allow-control", "CTL", n=rows, rate=rate)
    tl = Timeline(rows, rate)
    got = Bridged(pull, tl)
    got.read_until(50)
    dev = dmapickle.bridge_control(ctl)
    info = dev.info()
    assert (info["rate_hz"], info["block_rows"], info["running"], info["link"]) == (rate, rows, True, "inline")
    at = dev.set(rate_hz=32_000)["at_seq"]
    tl.change(at, rate=32_000)
    got.read_until(at + 50)

    # Malformed requests: a clear error each, nothing sent to the device.
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(ctl)
    for request, reason in [(b"\xff\xfe", "not UTF-8 text"), (b"frobnicate", "unknown command `frobnicate`"),
                            (b"set rate=fast", "`rate=fast`: fast is not a number"),
                            (b"@nope info", "no source named nope (sources: dev0)"), (b"", "empty command")]:
        req.send(request)
        assert req.poll(10_000), request
        reply = req.recv().decode()
        assert reply.startswith("error ") and reason in reply, (request, reply)
    req.send_multipart([b"info", b"more"])
    assert req.poll(10_000) and req.recv().startswith(b"error a command is one frame"), "multipart"
    req.close()
    with pytest.raises(ValueError, match="unknown command"):
        dev._native.control("reboot")
    # The device's own refusal is a DeviceError, as on stream.device.
    with pytest.raises(dmapickle.DeviceError, match="out of range 1..=1024"):
        dev.set(block_rows=5000)
    at = dev.set(block_rows=128)["at_seq"]
    tl.change(at, rows=128)
    got.read_until(at + 50)
    stats = dev.stats()
    # The bridge retries a late reply; a retry is answered from the device's cache, not applied.
    assert (stats["commands"], stats["overflows"]) == (5, 0), stats
    assert stats["bytes_skipped"] == RETRY_ZEROS * stats["repeats"], stats
    proc.kill()
    _, err = proc.communicate()
    log = board.log()
    assert log.count("Ok(SetRate { rate_hz: 32000 })") == 1, log
    assert log.count("Ok(SetBlockRows { rows: 128 })") == 1, log
    assert len(re.findall(r"INFO +command \d+:", log)) == 5, log
    assert "commands accepted on" in err and 'command "frobnicate": error unknown command' in err, err

"""Host -> device control over Ethernet: the Embassy build (LAN9118, embassy-net TCP) reads
commands on the TCP connection that carries its frames and answers them between two frames, as
the UART build does (the same command handling, firmware/src/control.rs). The UART tests of
hil_control.py run here unchanged over the forwarded port: rate and block rows changed
mid-stream with every sample checked, stop/start with no lost or repeated seq, stats that match
the device's log, the damaging proxy (bit flips, a cut command, lost replies: each setting
applied once) and a flood of commands while streaming.

`dmapickle ctl tcp://...` beside a reader: the device accepts a second connection on the data
port for commands only (replies, never frames) while a data connection is up; a connection made
while none is up is the data connection, so `ctl` alone reads (and drops) the frames sent while
it is connected, and the next reader starts at a later seq.
"""
import re
import subprocess
import time

import pytest

from builds import cli_exe, embassy_elf
from hil_control import (Checker, Timeline, connect, damaged_commands_applied_once,
                         device_log_stats, dmapickle, flood, rate_rows_stop_start)
from hil_ethernet import ETHERNET
from hil_link import done_line

pytestmark = pytest.mark.dmapickle(targets=("qemu",), timeout=240, profile="strict", **ETHERNET)
__all__ = ["dmapickle"]  # the package fixture, hil_control's


@pytest.fixture
def net_board(dmapickle_start):
    """`net_board(**boot_params)`: the Embassy build in QEMU, listening; `.addr` its port."""
    def start(**params):
        board = dmapickle_start(firmware=embassy_elf(), **params)
        board.addr = ("127.0.0.1", board.hostfwd[0])
        return board
    return start


def ctl(board, *words):
    """`dmapickle ctl tcp://127.0.0.1:PORT WORDS...`: its stdout, which must succeed."""
    run = subprocess.run([cli_exe(), "ctl", f"tcp://{board.addr[0]}:{board.addr[1]}", *words],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, (run.returncode, run.stdout, run.stderr)
    return run.stdout


def test_rate_rows_stop_start_over_ethernet(net_board, dmapickle):
    rows, rate = 64, 64_000
    board = net_board(n=rows, rate=rate)
    log = rate_rows_stop_start(board, board.addr, dmapickle, rows, rate, "Ethernet")
    assert "control connection" not in log, "stream.device uses the data connection"


def test_damaged_commands_and_lost_replies_over_ethernet(net_board, dmapickle):
    rows, rate = 64, 64_000
    board = net_board(n=rows, rate=rate)
    damaged_commands_applied_once(board, board.addr, dmapickle, rows, rate)


def test_a_flood_of_commands_over_ethernet_loses_no_block(net_board, dmapickle):
    rows, rate = 256, 256_000
    board = net_board(n=rows, rate=rate)
    # A measurement, not a pass/fail bound (no timed assertions): docs/performance.md records
    # the block rate flooded against the device's own 1000 blocks/s and the quiet rate.
    flood(board.addr, dmapickle, rows, rate, "Ethernet")


def test_ctl_on_a_second_connection_beside_a_reader(net_board, dmapickle):
    rows, rate = 64, 64_000
    board = net_board(n=rows, rate=rate)
    with connect(board.addr, dmapickle) as s:
        tl = Timeline(rows, rate)
        chk = Checker(s, tl)
        chk.read_until(64)
        out = ctl(board, "set", "rate=32000", "rows=128")
        ats = [int(a) for a in re.findall(r"at_seq=(\d+)", out)]
        assert len(ats) == 2 and ats[0] <= ats[1], out
        tl.change(ats[0], rate=32_000)
        tl.change(ats[1], rows=128)
        chk.read_until(ats[1] + 64)
        info = dict(w.split("=", 1) for w in ctl(board, "info").split())
        assert (info["rate_hz"], info["block_rows"], info["running"]) == ("32000", "128", "true"), info
        stats = dict(w.split("=", 1) for w in ctl(board, "stats").split())
        chk.read_until(chk.next_seq + 32)
        # The control connections got replies only: the reader saw every frame (Checker
        # asserts each seq follows the last).
        reader = s.stats
        assert (reader["corrupt"], reader["lost"], reader["refused"], reader["seq_jumps"]) == (0, 0, 0, 0), reader
    log = board.wait_log("Ok(GetStats) -> Stats", timeout=30)
    assert len(re.findall(r"control connection \d+ from", log)) == 3, log
    assert device_log_stats(log)["commands"] == int(stats["commands"]) == 4, log
    assert not re.search(r"(?<!control )connection 2 from", log), "the reader's connection stayed up"


def test_ctl_connections_back_to_back_are_each_served_once(net_board, dmapickle):
    """`ctl` after `ctl` beside a reader: each new command connection reaches the device while
    it is still closing the last one (its one command socket must be listening again, whatever
    the blocks published meanwhile interrupted), and each is served on the first try (the
    device logs exactly one connection per `ctl`: no connection refused and made again)."""
    rows, rate, runs = 64, 8_000, 16
    board = net_board(n=rows, rate=rate)
    with connect(board.addr, dmapickle) as s:
        chk = Checker(s, Timeline(rows, rate))
        chk.read_until(8)
        for i in range(runs):
            out = ctl(board, "ping")
            assert re.fullmatch(r"host_ns=\d+ device_us=\d+\s*", out), (i, out)
            chk.read_until(chk.next_seq + 2)
        reader = s.stats
        assert (reader["corrupt"], reader["lost"], reader["refused"], reader["seq_jumps"]) == (0, 0, 0, 0), reader
    log = board.wait_log(f"control connection {runs} closed", timeout=30)
    assert len(re.findall(r"control connection \d+ from", log)) == runs, log
    # Each closed once: a close interrupted by a block must not be taken up again as a new one.
    assert len(re.findall(r"control connection \d+ closed", log)) == runs, log
    assert "control accept" not in log, log
    assert len(re.findall(r"command \d+: Ok\(Ping", log)) == runs, log


def test_ctl_alone_is_the_data_connection(net_board, dmapickle):
    rows, rate = 64, 64_000
    board = net_board(n=rows, rate=rate)
    info = dict(w.split("=", 1) for w in ctl(board, "info").split())
    assert (info["rate_hz"], info["block_rows"]) == ("64000", "64"), info
    # ctl read (and dropped) the frames sent while it was connected; the next reader starts at
    # a frame boundary, later, and from there loses nothing.
    time.sleep(0.2)
    with connect(board.addr, dmapickle) as s:
        first = s.next(timeout=60)
        assert first is not None and first.seq >= int(info["next_seq"]), (first, info)
        chk = Checker(s, Timeline(rows, rate))
        chk.next_seq = first.seq + 1
        chk.read_until(first.seq + 128)
        reader = s.stats
        assert (reader["corrupt"], reader["lost"], reader["refused"]) == (0, 0, 0), reader
    log = board.log()
    assert "control connection" not in log, log
    assert re.search(r"(?<!control )connection 2 from", log), log


def test_commands_to_the_last_block_and_the_stack_high_water(net_board, dmapickle):
    """A run with an end (`count=`), commands of every kind while it streams, every block read
    to the last: the device exits cleanly and its `done:` line gives the stack high-water with
    the control path used (docs/performance.md records it)."""
    rows, rate, count = 64, 64_000, 1200
    board = net_board(n=rows, rate=rate, count=count)
    with connect(board.addr, dmapickle) as s:
        dev = s.device
        tl = Timeline(rows, rate)
        chk = Checker(s, tl)
        chk.read_until(100)
        tl.change(dev.set(rate_hz=128_000)["at_seq"], rate=128_000)
        chk.read_until(chk.next_seq + 50)
        tl.change(dev.set(block_rows=1024)["at_seq"], rows=1024)
        chk.read_until(chk.next_seq + 20)
        stopped = dev.stop()["at_seq"]
        chk.read_until(stopped)
        tl.change(stopped)
        dev.ping()
        assert dev.start()["at_seq"] == stopped
        # 250 blocks/s to the end, so the stats below find the device still streaming.
        tl.change(dev.set(block_rows=64)["at_seq"], rows=64)
        tl.change(dev.set(rate_hz=16_000)["at_seq"], rate=16_000)
        commands = 7
        while chk.next_seq < count - 200:
            dev.stats()
            commands += 1
            chk.read_until(chk.next_seq + 10)
        chk.read_until(count)
        assert s.next(timeout=60) is None, "the device closes after `count` messages"
    assert board.wait() == 0, board.log()
    log = board.log()
    messages, stalls, overflows, stack = done_line(log)
    assert (messages, overflows) == (count, 0), log
    assert f"ethernet: 1 connections, 0 control connections, {commands} commands" in log, log
    print(f"\n[hil] ethernet control: {count} messages, {commands} commands, stack high water "
          f"{stack} bytes, {stalls} ADC stalls")

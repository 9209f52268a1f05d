"""A panic, a HardFault and bad boot parameters reach the host through defmt and fail the run.
The dmapickle pytest plugin runs the firmware (UART0 unconnected: these runs only log); the
refusals of `firmware/qemu.sh` itself are checked on the script."""
import os
import re
import socket
import subprocess
import time

import pytest

from builds import ROOT

QEMU_SH = ROOT / "firmware" / "qemu.sh"
pytestmark = pytest.mark.dmapickle(targets=("qemu",), timeout=60)


@pytest.fixture
def run(dmapickle_start):
    """`run(params)`: the firmware's exit status and decoded log, the run cleaned up at once."""

    def go(params):
        target = dmapickle_start(serial=False, **params)
        status = target.wait()
        log = target.log()
        target.close()
        return status, log

    return go


def test_clean_run_exits_zero_and_reports_its_stack(run):
    status, log = run({"count": 4, "n": 64})
    assert status == 0, log
    assert "BootConfig { placement: Inline, block: 64, count: 4" in log
    assert re.search(r"done: 4 messages, \d+ ADC stalls, 0 overflows, stack high water \d+ bytes", log), log


def test_panic_is_logged_and_exits_101(run):
    status, log = run({"count": 2, "fault": "panic"})
    assert status == 101, log
    assert "ERROR panic:" in log and "deliberate panic (boot parameter fault=panic)" in log, log


def test_hardfault_is_logged_and_exits_102(run):
    status, log = run({"count": 2, "fault": "hardfault"})
    assert status == 102, log
    m = re.search(r"ERROR HardFault: pc=0x([0-9a-f]{8}) .* hfsr=0x([0-9a-f]{8}) cfsr=0x([0-9a-f]{8})", log)
    assert m, log
    # The udf instruction: an UNDEFINSTR usage fault (CFSR bit 16), forced to HardFault (HFSR bit 30).
    assert int(m.group(3), 16) & (1 << 16) and int(m.group(2), 16) & (1 << 30), log


def test_bad_boot_parameter_is_a_clear_error(run):
    status, log = run({"n": 0})
    assert status == 2, log
    assert "bad value in boot parameter `n=0`" in log, log
    status, log = run({"speed": 9})
    assert status == 2, log
    assert "unknown boot parameter `speed=9`" in log, log


def test_a_fault_alone_fires_after_the_first_message(run):
    # count=0 runs forever, so `fault=panic` alone fires after the first message.
    status, log = run({"fault": "panic"})
    assert status == 101, log
    assert re.search(r"done: 1 messages, ", log) and "deliberate panic" in log, log


def test_a_fault_fires_after_the_messages_it_names(run):
    status, log = run({"fault": "hardfault@3", "n": 32})
    assert status == 102, log
    assert re.search(r"done: 3 messages, ", log) and "ERROR HardFault:" in log, log
    # count ends the run before the fault is due: a clean exit.
    status, log = run({"fault": "panic@5", "count": 2, "n": 32})
    assert status == 0, log
    assert re.search(r"done: 2 messages, ", log), log


def test_bad_boot_parameters_say_what_is_valid(run):
    status, log = run({"n": 5000})
    assert status == 2, log
    assert "bad value in boot parameter `n=5000`: n takes 1..=1024 (rows per block)" in log, log
    status, log = run({"speed": 9})
    assert "(keys: mode n count rate fault reboot skew_ppm drop)" in log, log


def test_shared_mode_without_a_host_is_refused_with_the_command_that_works(elf):
    # What `cargo run --release -- mode=shared ...` used to hang on: no UART, no PSRAM file.
    out = subprocess.run([str(QEMU_SH), "--timeout", "60", elf, "mode=shared", "count=100"],
                         capture_output=True, text=True, timeout=30)
    status, err = out.returncode, out.stderr
    assert status == 64, err
    assert "mode=shared lends each array to the host" in err, err
    assert f"--psram /dev/shm/psram {elf} mode=shared" in err, err
    assert "scripts/live-source.sh shared" in err, err


def test_an_rtt_elf_is_refused():
    elf = os.environ.get("DMAPICKLE_FIRMWARE_RTT_ELF")
    assert elf, "60-hil.sh sets DMAPICKLE_FIRMWARE_RTT_ELF to the RTT build"
    out = subprocess.run([str(QEMU_SH), elf, "count=1"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 65, out
    assert "is the real-board (RTT) build, which QEMU cannot run" in out.stderr, out.stderr


def test_a_stalled_shared_link_says_what_it_waits_for(dmapickle_start):
    # A host that reads the frames but never releases: once all 32 slots are lent, the firmware
    # says (once) that it waits for the host.
    board = dmapickle_start(mode="shared", n=32, rate=64000, count=100)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(board.sock))
        s.settimeout(0.1)
        deadline = time.monotonic() + 30
        log = ""
        while "WARN" not in log and time.monotonic() < deadline:
            try:
                s.recv(1 << 16)
            except socket.timeout:
                log = board.log()
    assert "WARN  all 32 slots lent after 32 messages, waiting for the host to release one" in log, log
    assert log.count("slots lent") == 1, log

"""A panic, a HardFault and bad boot parameters reach the host through defmt and fail the run."""
import re

from board import Board


def run(tmp_path, params):
    with Board(tmp_path, params, serial=False, timeout=60) as board:
        status = board.wait()
        return status, board.log()


def test_clean_run_exits_zero_and_reports_its_stack(tmp_path):
    status, log = run(tmp_path, {"count": 4, "n": 64})
    assert status == 0, log
    assert "BootConfig { mode: Inline, block: 64, count: 4" in log
    assert re.search(r"done: 4 messages, \d+ ADC stalls, 0 overflows, stack high water \d+ bytes", log), log


def test_panic_is_logged_and_exits_101(tmp_path):
    status, log = run(tmp_path, {"count": 2, "fault": "panic"})
    assert status == 101, log
    assert "ERROR panic:" in log and "deliberate panic (boot parameter fault=panic)" in log, log


def test_hardfault_is_logged_and_exits_102(tmp_path):
    status, log = run(tmp_path, {"count": 2, "fault": "hardfault"})
    assert status == 102, log
    m = re.search(r"ERROR HardFault: pc=0x([0-9a-f]{8}) .* hfsr=0x([0-9a-f]{8}) cfsr=0x([0-9a-f]{8})", log)
    assert m, log
    # The udf instruction: an UNDEFINSTR usage fault (CFSR bit 16), forced to HardFault (HFSR bit 30).
    assert int(m.group(3), 16) & (1 << 16) and int(m.group(2), 16) & (1 << 30), log


def test_bad_boot_parameter_is_a_clear_error(tmp_path):
    status, log = run(tmp_path, {"n": 0})
    assert status == 2, log
    assert "bad value in boot parameter `n=0`" in log, log
    status, log = run(tmp_path, {"speed": 9})
    assert status == 2, log
    assert "unknown boot parameter `speed=9`" in log, log

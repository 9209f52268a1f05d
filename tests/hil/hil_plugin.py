"""The pytest plugin (dmapickle.pytest_plugin) tested with pytest's `pytester`: each test runs
one inner test in a fresh pytest process against the firmware in QEMU (one passes, one fails on
a gap, one times out in `expect`, one crashes the firmware); each report must say what happened,
by seq number, with the device's defmt log, and afterwards no QEMU process, socket directory or
PSRAM file of it is left. Needs `-p pytester` and `--dmapickle-firmware` (60-hil.sh passes both).
"""
import json
import re
from pathlib import Path

import pytest

CONFTEST = r'''
import json, os
import pytest

@pytest.fixture(autouse=True)
def spy(dmapickle_target, request):
    # What the outer test checks is gone afterwards: the QEMU pid, its directory, the PSRAM file.
    t = dmapickle_target
    with open(os.environ["SPY"], "a") as f:
        f.write(json.dumps({"test": request.node.name, "pid": t.proc.pid, "dir": str(t.dir),
                            "psram": str(t.psram) if t.psram else None}) + "\n")

'''

TESTS = r'''
import pytest

@pytest.mark.dmapickle(mode="shared", n=64, rate=64000, count=48)
def test_passes(dmapickle_stream, dmapickle_target):
    first = dmapickle_stream.take(16)
    assert [m.seq for m in first] == list(range(16))
    assert all(m.load()["adc"].shape == (64, 4) for m in first)
    del first
    assert len(dmapickle_stream.drain(timeout=60)) == 32
    dmapickle_stream.assert_continuity()
    assert dmapickle_target.wait(30) == 0

@pytest.mark.dmapickle(n=16, rate=16000, count=40, drop="17+3")
def test_gap(dmapickle_stream):
    dmapickle_stream.drain(timeout=60)
    dmapickle_stream.assert_no_loss()

@pytest.mark.dmapickle(n=16, rate=16000)
def test_expect_times_out(dmapickle_stream):
    dmapickle_stream.expect(lambda obj: obj["rate_hz"] != 16000, timeout=1.5)

@pytest.mark.dmapickle(n=16, rate=16000, count=10, fault="panic")
def test_firmware_crashes(dmapickle_stream):
    dmapickle_stream.take(20, timeout=30)
'''


def alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def run(pytester, request, monkeypatch):
    """Runs one of TESTS in a fresh pytest process; after it, nothing it started may be left."""
    elf = request.config.getoption("dmapickle_firmware")
    assert elf, "run with --dmapickle-firmware ELF"
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=TESTS)
    spy = pytester.path / "spy.jsonl"
    monkeypatch.setenv("SPY", str(spy))

    def go(name):
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--dmapickle-firmware", elf, "--dmapickle-timeout", "60",
            f"test_inner.py::{name}", timeout=240)
        seen = [json.loads(line) for line in spy.read_text().splitlines()]
        assert [s["test"] for s in seen] == [name], seen
        left = seen[0]
        assert not alive(left["pid"]), f"QEMU {left['pid']} outlived {name}"
        assert not Path(left["dir"]).exists(), f"{left['dir']} left behind by {name}"
        assert left["psram"] is None or not Path(left["psram"]).exists(), left
        return result, "\n".join(result.outlines)

    return go


def test_a_passing_test_passes_and_leaves_nothing(run):
    result, out = run("test_passes")
    result.assert_outcomes(passed=1)


def test_a_gap_fails_naming_the_missing_seqs_with_the_defmt_log(run):
    result, out = run("test_gap")
    result.assert_outcomes(failed=1)
    assert "3 messages lost: seq 17..19 (after seq 16 came 20)" in out, out
    assert "37 messages received, seq 0..39" in out, out
    # The report carries the device's defmt log, decoded, with its timestamps.
    assert "dmapickle defmt log (qemu)" in out, out
    assert re.search(r"^\d+\.\d{6} INFO +published seq 0$", out, re.M), out
    assert re.search(r"^\d+\.\d{6} INFO +done: 40 messages", out, re.M), out


def test_expect_times_out_naming_what_it_saw(run):
    result, out = run("test_expect_times_out")
    result.assert_outcomes(failed=1)
    m = re.search(r"ExpectTimeout: expect\(<lambda>\): no match among (\d+) messages \(seq 0\.\.(\d+)\) "
                  r"within 1\.5 s \(\d+ messages received, seq 0\.\.\d+; the stream is open, "
                  r"the firmware: still running\)", out)
    assert m, out
    # 1000 messages a second, less QEMU's start: well over a hundred looked at.
    assert int(m.group(1)) > 100 and int(m.group(2)) == int(m.group(1)) - 1, out


def test_a_firmware_crash_fails_the_test_with_the_panic_in_the_log(run):
    result, out = run("test_firmware_crashes")
    result.assert_outcomes(failed=1)
    assert re.search(r"take\(20\): got 10 before the stream ended \(10 messages received, seq 0\.\.9; "
                     r"the stream ended, the firmware: exit status 101 \(a panic\)\)", out), out
    assert "deliberate panic (boot parameter fault=panic)" in out, out
    assert "exit status 101 (a panic)" in out


def test_pytest_fixtures_lists_the_plugins_fixtures(pytester):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures")
    out = "\n".join(result.outlines)
    assert "fixtures defined from dmapickle.pytest_plugin" in out, out
    for name in ("dmapickle_target", "dmapickle_stream", "dmapickle_start"):
        assert re.search(rf"^{name} -- ", out, re.M), out


def test_the_readme_example_is_examples_hil_test_rig_py():
    # 55-readme.sh runs the README's pytest command on the file; this makes it the one shown.
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    shown = re.search(r"checks it is examples/hil/test_rig\.py\) -->\n```python\n(.*?)```", readme, re.S)
    assert shown, "the README's plugin example block is missing"
    assert shown.group(1) == (root / "examples/hil/test_rig.py").read_text()

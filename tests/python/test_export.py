"""`dmapickle export` to HDF5, Zarr v3 and plain pickles, `dmapickle import`, and progress.

Every export is read back by a separate Python that imports only the field's stock library (h5py,
zarr or pickle) and numpy, never dmapickle; what it read must equal, array for array, what
`dmapickle.open` delivers from the same recording. Sources: the device simulator (the real core
Pickler + hal Publisher) and the firmware on QEMU's board (tests/python/data/qemu-board.rec, made
by data/make_qemu_recording.py).
"""

from __future__ import annotations

import json
import os
import pickle
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dmapickle
from conftest import PYTHON, expected_adc, wait_for

QEMU_REC = Path(__file__).resolve().parent / "data" / "qemu-board.rec"

# Reads an export with the stock library only; writes every dataset to an .npz and the
# attributes to JSON.
READ_BACK = r"""
import json, sys
import numpy as np
path, fmt, npz, attrs_out = sys.argv[1:5]
data, attrs = {}, {}
if fmt == "hdf5":
    import h5py
    f = h5py.File(path, "r")
    groups = {"": f, **{k: v for k, v in f.items() if isinstance(v, h5py.Group)}}
    for g, grp in groups.items():
        attrs[g] = {k: (v.item() if hasattr(v, "item") else v) for k, v in grp.attrs.items()}
        for k, v in grp.items():
            if isinstance(v, h5py.Dataset):
                data[f"{g}/{k}"] = v[()]
                assert v.chunks is not None and v.maxshape[0] is None, k
elif fmt == "zarr":
    import zarr
    z = zarr.open_group(path, mode="r")
    assert z.metadata.zarr_format == 3
    groups = {"": z, **dict(z.groups())}
    for g, grp in groups.items():
        attrs[g] = dict(grp.attrs)
        for k, v in grp.arrays():
            data[f"{g}/{k}"] = v[...]
else:
    import os, pickle
    names = sorted(n for n in os.listdir(path) if n.endswith(".pkl"))
    for i, n in enumerate(names):
        raw = open(os.path.join(path, n), "rb").read()
        attrs[n] = raw[1]
        msg = pickle.load(open(os.path.join(path, n), "rb"))
        for k, v in msg.items():
            data[f"{i}/{k}"] = np.asarray(v)
            if isinstance(v, np.ndarray):
                attrs[f"{n}/{k}/writeable"] = bool(v.flags.writeable)
assert "dmapickle" not in sys.modules, "the reader must not need dmapickle"
np.savez(npz, **{k.replace("/", "|"): v for k, v in data.items()})
json.dump(attrs, open(attrs_out, "w"), default=str)
"""


def read_back(path: Path, fmt: str, tmp_path: Path):
    npz, attrs = tmp_path / "back.npz", tmp_path / "back.json"
    # -I: no PYTHONPATH, no user site, no current directory: only what a stock install has.
    subprocess.run([PYTHON, "-I", "-c", READ_BACK, str(path), fmt, str(npz), str(attrs)], check=True, timeout=120)
    with np.load(npz) as z:
        data = {k.replace("|", "/"): z[k] for k in z.files}
    return data, json.loads(attrs.read_text())


def delivered(rec: Path):
    """(seq, loaded message) of every message dmapickle.open delivers from `rec`."""
    with dmapickle.open(str(rec), reconnect=False) as s:
        return [(m.seq, m.load()) for m in s]


def export_env():
    return {**os.environ, "DMAPICKLE_PYTHON": PYTHON}


def run_export(cli, *args, check=True):
    out = subprocess.run([cli, "export", *args], capture_output=True, text=True, timeout=120, env=export_env())
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture
def sim_rec(device, tmp_path):
    rec = tmp_path / "sim.rec"
    subprocess.run([device, "--to", f"file://{rec}", "--count", "300", "--rows", "64", "--buffers", "2"], check=True, timeout=60)
    return rec


def assert_same_as_delivered(data, msgs, group="", first=0):
    n = len(msgs)
    seqs = data[f"{group}/frame_seq"]
    assert seqs.dtype == np.uint32 and len(seqs) == n
    assert list(seqs) == [s for s, _ in msgs]
    assert list(data[f"{group}/message_index"]) == list(range(first, first + n))
    for key in msgs[0][1]:
        col = data[f"{group}/{key}"]
        assert len(col) == n, key
        for i, (_, m) in enumerate(msgs):
            np.testing.assert_array_equal(col[i], m[key], err_msg=f"{key} of message {i}")
            if isinstance(m[key], np.ndarray):
                assert col.dtype == m[key].dtype


@pytest.mark.parametrize("fmt,suffix", [("hdf5", "h5"), ("zarr", "zarr")])
@pytest.mark.parametrize("source", ["simulator", "qemu-board"])
def test_round_trip_through_the_stock_library(cli, sim_rec, tmp_path, fmt, suffix, source):
    rec = sim_rec if source == "simulator" else QEMU_REC
    out = tmp_path / f"out.{suffix}"
    # 16 KiB chunks: the 300 simulator messages span several chunks and end in a partial one.
    r = run_export(cli, str(rec), str(out), "--chunk-bytes", "16K")
    assert r.stdout.startswith("exported ") and "(1 layout," in r.stdout, r.stdout
    data, attrs = read_back(out, fmt, tmp_path)
    msgs = delivered(rec)
    assert len(msgs) == (300 if source == "simulator" else 64)
    assert_same_as_delivered(data, msgs)
    # seq continuous, from 0: the frame's and the device's own.
    assert (np.diff(data["/frame_seq"].astype(np.int64)) == 1).all() and data["/frame_seq"][0] == 0
    assert (np.diff(data["/seq"]) == 1).all()
    if source == "simulator":
        for i in range(300):
            np.testing.assert_array_equal(data["/adc"][i], expected_adc(i, 64))
        assert data["/adc"].shape == (300, 64, 4) and data["/adc1"].shape == (300, 64, 4)
    else:
        assert data["/adc"].shape == (64, 256, 4) and data["/adc"].dtype == np.dtype("<i2")
        assert (np.diff(data["/t_us"]) == 4000).all()
    # A recording does not know when it was received: no host_time.
    assert "/host_time" not in data
    root = attrs[""]
    assert root["dmapickle_source"] == str(rec) and root["dmapickle_profile"] == "general"
    assert root["complete"] in (True, "True") and int(root["messages"]) == len(msgs)
    assert json.loads(root["stream_stats"])["frames_ok"] == len(msgs)
    layout = json.loads(root["layout"])
    assert ["adc", "array", "<i2", [64, 4] if source == "simulator" else [256, 4]] in layout


def test_each_layout_gets_its_own_group(cli, device, tmp_path):
    rec = tmp_path / "two.rec"
    with open(rec, "wb") as f:
        subprocess.run([device, "--count", "5", "--rows", "16"], stdout=f, check=True)
        # The device restarts with another block size: a second layout.
        subprocess.run([device, "--count", "3", "--rows", "8"], stdout=f, check=True)
    out = tmp_path / "two.h5"
    r = run_export(cli, str(rec), str(out))
    assert "(2 layouts," in r.stdout, r.stdout
    data, attrs = read_back(out, "hdf5", tmp_path)
    msgs = delivered(rec)
    assert_same_as_delivered(data, msgs[:5])
    assert_same_as_delivered(data, msgs[5:], "layout1", first=5)
    assert attrs[""]["layouts"] == 2 and attrs["layout1"]["messages"] == 3
    strict = run_export(cli, str(rec), str(tmp_path / "strict.h5"), "--strict-layout", check=False)
    assert strict.returncode == 1 and "strict_layout" in strict.stderr


def test_plain_pickles_load_with_stock_pickle_and_import_back(cli, sim_rec, tmp_path):
    pk = tmp_path / "pickles"
    run_export(cli, str(sim_rec), str(pk), "--pickle")
    names = sorted(os.listdir(pk))
    assert names == [f"{i:08d}.pkl" for i in range(300)]
    data, attrs = read_back(pk, "pickle", tmp_path)
    msgs = delivered(sim_rec)
    for i, (_, m) in enumerate(msgs):
        # Arrays came out-of-band: protocol 5, buffers in-band, writable as they were.
        assert attrs[names[i]] == 5
        assert attrs[f"{names[i]}/adc/writeable"] == m["adc"].flags.writeable
        for k in m:
            np.testing.assert_array_equal(data[f"{i}/{k}"], m[k])
    # Back into a recording (validated), replayed to a socket and read by dmapickle.open.
    rec2 = tmp_path / "back.rec"
    imp = subprocess.run([cli, "import", str(pk), str(rec2)], capture_output=True, text=True, timeout=60)
    assert imp.returncode == 0 and imp.stdout.startswith("imported 300 pickles"), imp.stderr
    replay = subprocess.Popen([cli, "replay", str(rec2), "--to", "tcp-listen://127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        addr = replay.stderr.readline().split("tcp://")[1].strip()
        with dmapickle.open(f"tcp://{addr}", reconnect=False) as s:
            back = [(m.seq, m.load(), len(m.buffers)) for m in s]
        assert replay.wait(30) == 0
    finally:
        replay.kill()
        replay.wait()
        replay.stderr.close()
    assert [s for s, _, _ in back] == list(range(300)) and all(n == 0 for _, _, n in back)
    for (_, m), (_, b, _) in zip(msgs, back):
        for k in m:
            np.testing.assert_array_equal(b[k], m[k])
    # Those messages have no out-of-band buffer: their plain pickles are protocol 4.
    pk4 = tmp_path / "pickles4"
    run_export(cli, str(rec2), str(pk4), "--pickle")
    _, attrs4 = read_back(pk4, "pickle", tmp_path)
    assert {attrs4[n] for n in names} == {4}


def test_import_refuses_a_hostile_pickle_and_writes_nothing(cli, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "0.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    (d / "1.pkl").write_bytes(b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.")
    out = tmp_path / "x.rec"
    r = subprocess.run([cli, "import", str(d), str(out)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "1.pkl: rejected: " in r.stdout, (r.stdout, r.stderr)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("fmt,suffix", [("hdf5", "h5"), ("zarr", "zarr")])
def test_an_export_killed_midway_leaves_a_readable_prefix(cli, start_device, tmp_path, fmt, suffix, sig):
    rows = 512
    dev = start_device("--to", "tcp-listen:127.0.0.1:0", "--count", "100000", "--rows", str(rows), "--interval-ms", "2")
    out = tmp_path / f"live.{suffix}"
    # The Rust CLI execs Python: the signal goes straight to the export.
    proc = subprocess.Popen(
        [cli, "export", f"tcp://{dev.address}", str(out), "--flush-interval", "0.2", "--chunk-bytes", "64K"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=export_env(),
    )
    try:
        wait_for(lambda: out.exists() or proc.poll() is not None, 30, "the export to start")
        time.sleep(1.2)  # several commits and chunks
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if sig == signal.SIGINT:
        assert proc.returncode == 0 and "(interrupted)" in stdout, stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    data, attrs = read_back(out, fmt, tmp_path)
    root = attrs[""]
    assert root["complete"] in (False, "False")
    n = int(root["messages"])
    assert n >= 10, root
    lengths = {k: len(v) for k, v in data.items()}
    # Every column holds at least the committed messages; a prefix of the stream, no hole.
    assert min(lengths.values()) >= n, lengths
    if sig == signal.SIGINT:
        assert set(lengths.values()) == {n}, lengths
    m = min(lengths.values())
    assert list(data["/frame_seq"][:m]) == list(range(m))
    assert (np.diff(data["/host_time"][:m]) >= 0).all() and abs(data["/host_time"][0] - time.time()) < 120
    for i in range(m):
        np.testing.assert_array_equal(data["/adc"][i], expected_adc(i, rows))


def test_a_ctrl_c_inside_a_row_waits_for_the_whole_row():
    # The guard export() puts around adding one message to every column: a SIGINT that lands
    # mid-row is raised only once the row is whole (a column one row longer than the others
    # was the symptom), and one outside a row interrupts at once, as Python's own handler does.
    from dmapickle._export import _RowGuard

    done = []
    with pytest.raises(KeyboardInterrupt):
        with _RowGuard() as guard:
            with guard.row():
                os.kill(os.getpid(), signal.SIGINT)
                for column in range(3):
                    time.sleep(0.01)  # Python runs signal handlers between these steps
                    done.append(column)
    assert done == [0, 1, 2]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        with _RowGuard():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
            pytest.fail("the interrupt outside a row did not stop the export")


def test_missing_python_or_package_is_one_clear_line(cli, sim_rec, tmp_path):
    env = {**os.environ, "DMAPICKLE_PYTHON": str(tmp_path / "no-python")}
    r = subprocess.run([cli, "export", str(sim_rec), str(tmp_path / "x.h5")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "DMAPICKLE_PYTHON" in r.stderr, r.stderr
    # A Python without dmapickle: this one without its site-packages (-I -S).
    bare = tmp_path / "bare-python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    bare.chmod(0o755)
    env["DMAPICKLE_PYTHON"] = str(bare)
    r = subprocess.run([cli, "export", str(sim_rec), str(tmp_path / "x.h5")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "no dmapickle package" in r.stderr and "[export]" in r.stderr, r.stderr
    assert not (tmp_path / "x.h5").exists()


def test_progress_plain_lines_bar_on_a_terminal_and_quiet(cli, sim_rec, tmp_path):
    size = sim_rec.stat().st_size
    rate = str(size // 3)  # about 3 s
    sink = tmp_path / "copy.rec"
    plain = subprocess.run([cli, "replay", str(sim_rec), "--to", str(sink), "--rate", rate], capture_output=True, text=True, timeout=60)
    lines = [l for l in plain.stderr.splitlines() if l.startswith("replay: ")]
    assert plain.returncode == 0 and lines, plain.stderr
    assert all("% " in l and " of " in l and "/s, ETA " in l for l in lines), lines
    assert sink.read_bytes() == sim_rec.read_bytes()
    quiet = subprocess.run([cli, "replay", str(sim_rec), "--to", str(sink), "--rate", rate, "--quiet"], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and not [l for l in quiet.stderr.splitlines() if l.startswith("replay: ")]
    # On a terminal: a bar redrawn in place, with rate and ETA, cleared at the end.
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([cli, "replay", str(sim_rec), "--to", str(sink), "--rate", str(size // 2)], stderr=slave)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        assert p.wait(30) == 0
    finally:
        os.close(master)
    text = seen.decode(errors="replace")
    assert "replay: [" in text and "ETA" in text and "KiB/s" in text, text[-500:]


def test_python_progress_is_a_bar_on_a_terminal_and_lines_otherwise():
    from dmapickle._export import Progress

    class Out(list):
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

        def write(self, s):
            self.append(s)

        def flush(self):
            pass

    for tty in (True, False):
        out = Out(tty)
        p = Progress("export", 1000, out=out, every=0.0)
        p.update(250, 5)
        p.finish()
        text = "".join(out)
        assert "25.0% 5 msgs" in text and "ETA" in text, text
        assert ("[#######" in text and text.startswith("\r")) if tty else text.endswith("\n")
    quiet = Out(True)
    Progress("export", 1000, out=quiet, quiet=True).update(500, 1)
    assert quiet == []

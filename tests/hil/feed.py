"""Python end of `dmapickle-hil-feeder` (tests/hil/feeder): messages as (pickle, buffers).

The feeder reads the firmware's frames with dmapickle-host and writes one record per message
(format in tests/hil/feeder/src/main.rs). Inline buffers arrive in the record; shared buffers
stay in the PSRAM file, which this side maps too, so the arrays Python builds on them *are* the
device's memory. Python tells the feeder when it is done with a message (`release`); only then
does the feeder drop its view, which posts the release the device waits for.
"""
import ctypes
import mmap
import os
import pickle
import select
import struct
import subprocess
import time
from dataclasses import dataclass, field

from dmapickle.pytest_plugin import kill_process_group, track_process_group

from builds import feeder_exe

_ENTRY = struct.Struct("<BBHII")
_HEAD = struct.Struct("<IBIH")
END_FIELDS = ("frames_ok", "corrupt", "lost", "bytes_skipped", "restarts", "refused", "bytes_read")


@dataclass
class Entry:
    shared: bool
    readonly: bool
    region: int
    offset: int
    length: int


@dataclass
class Record:
    seq: int
    restart: bool
    pickle: bytes
    entries: list
    memory: list = field(default_factory=list)  # per buffer: bytearray (inline) or mmap slice

    def load(self):
        return pickle.loads(self.pickle, buffers=[pickle.PickleBuffer(m) for m in self.memory])


class Feed:
    """Runs the feeder against a UART socket (and a PSRAM file as region `region_id`)."""

    def __init__(self, sock, *, region_id=None, region_path=None, timeout=240):
        args = [str(feeder_exe()), sock]
        self.map = None
        if region_path is not None:
            args.append(f"{region_id}={region_path}")
            with open(region_path, "r+b") as f:
                self.map = mmap.mmap(f.fileno(), 0)
            self.view = memoryview(self.map)
            anchor = ctypes.c_char.from_buffer(self.map)
            self.base = ctypes.addressof(anchor)  # where the mapping starts, for zero-copy checks
            del anchor  # it holds an export of the mapping, which would keep it from closing
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        track_process_group(self.proc.pid)
        self.fd = self.proc.stdout.fileno()
        self.deadline = time.monotonic() + timeout
        self.pending = bytearray()
        self.end = None

    def _read(self, n):
        while len(self.pending) < n:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("feeder sent nothing before the deadline")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise EOFError(f"feeder ended mid-stream (status {self.proc.poll()})")
            self.pending += chunk
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out

    def next(self):
        """The next Record, or None once the stream ended (then `self.end` holds the counters)."""
        if self.end is not None:
            return None
        tag = self._read(4)
        if tag == b"END1":
            self.end = dict(zip(END_FIELDS, struct.unpack("<7Q", self._read(56))))
            return None
        if tag != b"MSG1":
            raise ValueError(f"feeder stream out of step: {tag!r}")
        seq, restart, pickle_len, nbufs = _HEAD.unpack(self._read(_HEAD.size))
        entries = [Entry(k == 1, ro == 1, reg, off, ln)
                   for k, ro, reg, off, ln in (_ENTRY.unpack(self._read(_ENTRY.size)) for _ in range(nbufs))]
        rec = Record(seq, bool(restart), self._read(pickle_len), entries)
        for e in entries:
            if e.shared:
                if self.map is None:
                    raise ValueError(f"seq {seq}: shared buffer but no region mapped")
                rec.memory.append(self.view[e.offset:e.offset + e.length])
            else:
                # Writable memory: a read-only array can only come from the pickle's READONLY_BUFFER.
                rec.memory.append(bytearray(self._read(e.length)))
        return rec

    def release(self, seq):
        """Python holds no view of message `seq` any more: the device may reuse its buffers."""
        self.proc.stdin.write(f"R {seq}\n".encode())
        self.proc.stdin.flush()

    def release_all(self):
        self.proc.stdin.write(b"Q\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_process_group(self.proc)
        if self.map is not None:
            try:
                self.view.release()
                self.map.close()
            except BufferError:
                pass  # the caller still has arrays on it; the mapping goes when they do
            self.map = None

"""pytest plugin for hardware-in-the-loop rigs (entry point ``pytest11``: installing the package
is enough; ``pytest --fixtures`` lists what it gives).

One test file, three kinds of target, picked per run on the command line:

* ``--dmapickle-firmware ELF``: the firmware in QEMU (``qemu-system-arm``, mps2-an386 unless
  ``--dmapickle-qemu-machine``), UART0 on a unix socket, semihosting output (the defmt log) in
  a file, and with ``mode=shared`` the PSRAM backed by a file the host maps as a region;
* ``--dmapickle-source rtt://CHIP?...`` (or ``tcp://``, ``serial://``, ``unix://``): a real
  board, read through probe-rs or its link;
* ``--dmapickle-source FILE``: a recording, replayed.

Fixtures: ``dmapickle_target`` (started per test with the boot parameters of the test's
``@pytest.mark.dmapickle(...)`` marker), ``dmapickle_stream`` (a :class:`HilStream` on it:
``expect``, ``take``, ``drain``, ``assert_no_loss`` ...) and ``dmapickle_start`` (a factory for
tests that pick boot parameters themselves). Everything a target starts (QEMU, its watchdog) is
killed and every file it made (socket directory, defmt log, PSRAM file) removed when the test
ends, pass or fail. A failing test's report carries the device's defmt log, decoded by
``defmt-print -e ELF`` with the device's timestamps, and the target's state (exit status, stream
counters, clock fit).

Marker ``@pytest.mark.dmapickle(KEY=VALUE..., targets=("qemu",), psram=False, timeout=S,
profile="strict")``: KEY=VALUE are boot parameters (the firmware's ``mode=``, ``n=``,
``count=``, ``fault=`` ...; ``mode=shared`` maps the PSRAM); ``targets`` skips the test on
other kinds (fault injection only makes sense in QEMU). For QEMU also ``firmware=ELF`` (this
test's own build), ``serial=False`` (UART0 not connected: a run that only logs), ``hostfwd=PORT``
(the LAN9118 NIC, a free host port forwarded to the guest's TCP PORT: the stream is ``tcp://``)
and ``ready="TEXT"`` (start returns once the defmt log says TEXT). ``--dmapickle-param
KEY=VALUE`` and ``--dmapickle-link inline|shared`` set defaults for every test of the run.

Outside pytest (a benchmark, a demo), :class:`QemuTarget` is a context manager that cleans up
the same way: ``with QemuTarget(elf, {"mode": "shared"}, psram=True) as t: t.stream()``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pytest

#: Exit statuses of the dmapickle firmware (firmware/qemu.sh) and what they mean.
EXIT_MEANING = {
    0: "clean exit",
    2: "bad boot parameters",
    3: "a message could not be published",
    101: "a panic",
    102: "a HardFault",
    124: "killed by the run's timeout",
    -9: "killed by the plugin",
}
KINDS = ("qemu", "board", "replay")
_MARKER = "dmapickle"
_MARKER_KEYS = ("targets", "psram", "timeout", "profile", "firmware", "serial", "hostfwd", "ready")
_LIVE = {}  # id -> target: whatever is still running, killed at exit if pytest dies early


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("dmapickle", "dmapickle hardware-in-the-loop targets")
    g.addoption("--dmapickle-firmware", metavar="ELF",
                help="run this firmware ELF in QEMU for each test (default: ini dmapickle_firmware)")
    g.addoption("--dmapickle-source", metavar="URI",
                help="instead of QEMU: a live device (rtt://CHIP?..., tcp://, serial://, unix://) "
                     "or a recording (a path or file://) to replay")
    g.addoption("--dmapickle-target", choices=KINDS,
                help="the kind of target (default: replay for a file source, board for another "
                     "source, qemu with a firmware)")
    g.addoption("--dmapickle-param", metavar="KEY=VALUE", action="append", default=[],
                help="a boot parameter for every test (a test's marker overrides it)")
    g.addoption("--dmapickle-link", choices=("inline", "shared"),
                help="link mode for tests whose marker does not set mode=")
    g.addoption("--dmapickle-timeout", type=float, default=120.0, metavar="SECONDS",
                help="QEMU is killed after this long, whatever the test does (default 120)")
    g.addoption("--dmapickle-log", metavar="FILE",
                help="a raw defmt log of a board or recording, decoded with --dmapickle-firmware")
    g.addoption("--dmapickle-qemu", default="qemu-system-arm", metavar="EXE")
    g.addoption("--dmapickle-qemu-machine", default="mps2-an386", metavar="MACHINE")
    g.addoption("--dmapickle-qemu-cpu", default="cortex-m4", metavar="CPU")
    g.addoption("--dmapickle-qemu-arg", action="append", default=[], metavar="ARG",
                help="one more QEMU argument (repeatable)")
    g.addoption("--dmapickle-psram-size", default="16M", metavar="SIZE",
                help="size of the machine RAM backed by the PSRAM file in shared mode (QEMU syntax)")
    g.addoption("--dmapickle-region", type=int, default=2, metavar="ID",
                help="region id under which the PSRAM file is mapped (default 2)")
    parser.addini("dmapickle_firmware", "firmware ELF for --dmapickle-firmware's default")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "dmapickle(**boot_params, targets=(...), psram=False, timeout=None, profile='general'): "
        "boot parameters of this test's dmapickle target; targets limits the kinds it runs on",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    _kill_all()


def _kill_all() -> None:
    for target in list(_LIVE.values()):
        target.close()


atexit.register(_kill_all)


def _parse_param(word: str) -> tuple:
    key, sep, value = word.partition("=")
    if not sep or not key:
        raise pytest.UsageError(f"--dmapickle-param takes KEY=VALUE, not {word!r}")
    return key, value


class Settings:
    """The run's choice of target, from the command line and ini."""

    def __init__(self, config: pytest.Config) -> None:
        opt = config.getoption
        self.firmware = opt("dmapickle_firmware") or config.getini("dmapickle_firmware") or None
        self.source = opt("dmapickle_source")
        kind = opt("dmapickle_target")
        if kind is None:
            if self.source:
                kind = "board" if "://" in self.source and not self.source.startswith("file://") else "replay"
            elif self.firmware:
                kind = "qemu"
        self.kind = kind
        self.params = dict(_parse_param(w) for w in opt("dmapickle_param"))
        if opt("dmapickle_link"):
            self.params.setdefault("mode", opt("dmapickle_link"))
        self.timeout = opt("dmapickle_timeout")
        self.log = opt("dmapickle_log")
        self.qemu = {"exe": opt("dmapickle_qemu"), "machine": opt("dmapickle_qemu_machine"),
                     "cpu": opt("dmapickle_qemu_cpu"), "extra": list(opt("dmapickle_qemu_arg")),
                     "psram_size": opt("dmapickle_psram_size"), "region": opt("dmapickle_region")}

    def missing(self, firmware: Optional[str] = None) -> Optional[str]:
        if self.kind is None and not firmware:
            return ("no dmapickle target: pass --dmapickle-firmware ELF (QEMU) or --dmapickle-source "
                    "URI (a board or a recording)")
        if self.kind == "qemu" and not (firmware or self.firmware):
            return "--dmapickle-target qemu needs --dmapickle-firmware ELF"
        if self.kind not in (None, "qemu") and not self.source:
            return f"--dmapickle-target {self.kind} needs --dmapickle-source URI"
        return None

    def target(self, params: Dict[str, Any], opts: Dict[str, Any]) -> "Target":
        """A target of the run's kind (not started) for one test's boot parameters and options."""
        timeout = float(opts.get("timeout") or self.timeout)
        profile = opts.get("profile", "general")
        elf = opts.get("firmware") or self.firmware
        if self.kind in (None, "qemu"):
            return QemuTarget(elf, params, psram=bool(opts.get("psram")) or params.get("mode") == "shared",
                              serial=opts.get("serial"), hostfwd=opts.get("hostfwd"),
                              ready=opts.get("ready"), timeout=timeout, profile=profile, **self.qemu)
        cls = BoardTarget if self.kind == "board" else Target
        return cls(self.source, params, elf=elf, timeout=timeout, profile=profile, log=self.log)


def _describe_exit(status: Optional[int]) -> str:
    if status is None:
        return "still running"
    return f"exit status {status} ({EXIT_MEANING.get(status, 'unknown')})"


def decode_defmt(raw: Path, elf: Optional[str]) -> str:
    """The defmt log in ``raw``, decoded with ``defmt-print -e ELF`` (device timestamps first)."""
    if not raw.is_file():
        return f"(no defmt log: {raw} does not exist)"
    if raw.stat().st_size == 0:
        return "(the device logged nothing)"
    if not elf:
        return f"(a raw defmt log of {raw.stat().st_size} bytes; pass --dmapickle-firmware ELF to decode it)"
    exe = shutil.which("defmt-print")
    if exe is None:
        return f"(defmt-print not found: `cargo install defmt-print`; raw log {raw.stat().st_size} bytes)"
    with open(raw, "rb") as f:
        out = subprocess.run([exe, "-e", str(elf)], stdin=f, capture_output=True, timeout=60)
    return out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")


class Target:
    """A target: where its stream is (``source``, ``regions``) and what it logged. This base
    class is a recording replayed (or any source read as it is); :class:`QemuTarget` and
    :class:`BoardTarget` start or attach to a device. A context manager outside pytest:
    ``with QemuTarget(elf, {"count": 10}) as t: ...`` starts it and always cleans up."""

    kind = "replay"

    def __init__(self, source: Optional[str], params: Optional[Dict[str, Any]] = None, *,
                 elf: Optional[str] = None, timeout: float = 120.0, profile: str = "general",
                 log: Optional[str] = None) -> None:
        self.profile = profile
        self.params = dict(params or {})
        self.source = source
        self.regions: Dict[int, str] = {}
        self.elf = str(elf) if elf else None
        self.timeout = timeout
        self.raw_log: Optional[Path] = Path(log) if log else None
        self.streams: List["HilStream"] = []
        _LIVE[id(self)] = self

    def __enter__(self) -> "Target":
        try:
            return self.start()
        except BaseException:
            self.close()  # a start that failed halfway (QEMU up, no socket) leaves nothing either
            raise

    def __exit__(self, *exc: Any) -> bool:
        self.close()
        return False

    def start(self) -> "Target":
        return self

    def status(self) -> Optional[int]:
        """The firmware's exit status, None while it runs (or for a board or recording)."""
        return None

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Waits for the firmware to exit; its status (None for a board or recording)."""
        return None

    def log(self) -> str:
        """The device's defmt log so far, decoded, each line with the device's timestamp."""
        if self.raw_log is not None:
            return decode_defmt(self.raw_log, self.elf)
        return f"(no defmt log for a {self.kind} target; --dmapickle-log FILE gives one)"

    def wait_log(self, text: str, timeout: float = 60.0) -> str:
        """The decoded log once it contains ``text`` (a device saying it is ready, say);
        fails naming the log after ``timeout`` seconds or if the firmware exits first."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            if text in log:
                return log
            status = self.status()
            if status is not None or time.monotonic() > deadline:
                why = _describe_exit(status) if status is not None else f"{timeout} s passed"
                raise ExpectTimeout(f"the device did not log {text!r} ({why}); its log:\n{log}")
            time.sleep(0.2)

    def stream(self, **kwargs: Any) -> "HilStream":
        """A :class:`HilStream` on this target (``dmapickle.open`` keywords; no reconnecting)."""
        import dmapickle

        kwargs.setdefault("reconnect", False)
        kwargs.setdefault("regions", self.regions)
        kwargs.setdefault("profile", self.profile)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                raw = dmapickle.open(self.source, **kwargs)
                break
            except OSError as e:
                # QEMU's socket file appears when it binds, a moment before it listens.
                if self.kind != "qemu" or "refused" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        s = HilStream(raw, self)
        self.streams.append(s)
        return s

    def describe(self) -> str:
        lines = [f"target: {self.kind} {self.source}", f"boot parameters: {self.params or '(none)'}"]
        status = self.status()
        if self.kind == "qemu":
            lines.append(f"firmware: {self.elf}, {_describe_exit(status)}")
        for s in self.streams:
            lines.append(s.describe())
        return "\n".join(lines)

    def close(self) -> None:
        for s in self.streams:
            s.close()
        _LIVE.pop(id(self), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuTarget(Target):
    """The firmware ``elf`` in QEMU with boot parameters ``params`` (semihosting arguments).

    UART0 is the stream (``serial``, the default without ``hostfwd``: a unix socket QEMU waits
    on, so the firmware runs once the host connects; ``serial=False``: not connected); with
    ``psram`` the machine's RAM (the PSRAM at 0x21000000 on mps2-an386) is a file the host maps
    as region ``region``; ``hostfwd=PORT``: the LAN9118 NIC on QEMU's user network with a free
    host port forwarded to the guest's TCP PORT, and the stream is ``tcp://127.0.0.1:HOSTPORT``;
    ``ready=TEXT``: :meth:`start` returns once the defmt log contains TEXT (before a TCP server
    listens, QEMU's forwarder accepts and drops). A reset (SYSRESETREQ) reboots the firmware in
    the same run. Killed (its whole process group: ``timeout`` seconds at most) and its files
    removed by :meth:`close`.
    """

    kind = "qemu"

    def __init__(self, elf: str, params: Optional[Dict[str, Any]] = None, *, psram: bool = False,
                 serial: Optional[bool] = None, hostfwd: Optional[int] = None,
                 ready: Optional[str] = None, timeout: float = 120.0, profile: str = "general",
                 exe: str = "qemu-system-arm", machine: str = "mps2-an386", cpu: str = "cortex-m4",
                 extra: Sequence[str] = (), psram_size: str = "16M", region: int = 2) -> None:
        # A unix socket path must fit in 108 bytes: a short directory of our own, not tmp_path.
        self.dir = Path(tempfile.mkdtemp(prefix="dmapickle-qemu-"))
        super().__init__(None, params, elf=elf, timeout=timeout, profile=profile,
                         log=str(self.dir / "defmt.bin"))
        self.serial = hostfwd is None if serial is None else serial
        self.sock = self.dir / "uart0.sock" if self.serial else None
        self.stderr_path = self.dir / "qemu.stderr"
        shm = Path("/dev/shm")
        self.psram = (shm if shm.is_dir() else self.dir) / f"{self.dir.name}.psram" if psram else None
        self.hostfwd = None if hostfwd is None else (_free_port(), int(hostfwd))
        if self.hostfwd is not None:
            self.source = f"tcp://127.0.0.1:{self.hostfwd[0]}"
        elif self.sock is not None:
            self.source = f"unix://{self.sock}"
        if self.psram is not None:
            self.regions = {region: str(self.psram)}
        self.ready = ready
        self.qemu = (exe, machine, cpu, list(extra), psram_size)
        self.proc: Optional[subprocess.Popen] = None
        self.started_ns = 0
        self._watchdog: Optional[threading.Timer] = None

    def command(self) -> List[str]:
        exe, machine, cpu, extra, psram_size = self.qemu
        semi = "enable=on,target=native,arg=" + Path(self.elf).name
        for k, v in self.params.items():
            word = f"{k}={v}"
            if "," in word or " " in word:
                raise ValueError(f"boot parameter {word!r} must not contain a comma or a space")
            semi += f",arg={word}"
        cmd = [exe, "-machine", machine]
        if self.psram is not None:
            cmd = [exe, "-machine", f"{machine},memory-backend=psram", "-object",
                   f"memory-backend-file,id=psram,size={psram_size},mem-path={self.psram},share=on"]
        serial = f"unix:{self.sock},server=on,wait=on" if self.sock is not None else "null"
        cmd += ["-cpu", cpu, "-display", "none", "-monitor", "none", "-serial", serial,
                "-semihosting-config", semi, "-kernel", str(self.elf)]
        if self.hostfwd is not None:
            host, guest = self.hostfwd
            cmd += ["-nic", f"user,model=lan9118,hostfwd=tcp:127.0.0.1:{host}-:{guest}"]
        return cmd + extra

    def start(self) -> "QemuTarget":
        elf = Path(self.elf or "")
        if not elf.is_file():
            raise FileNotFoundError(f"--dmapickle-firmware {elf}: no such ELF")
        if b"_SEGGER_RTT" in elf.read_bytes():
            raise ValueError(f"{elf} is a real-board (RTT) build, which QEMU cannot run; "
                             "give it to a board with --dmapickle-source rtt://CHIP")
        if self.psram is not None:
            # QEMU would create it too; made first (zeroed, full size) the host can map it at once.
            with open(self.psram, "wb") as f:
                f.truncate(_size(self.qemu[4]))
        self.started_ns = time.monotonic_ns()
        with open(self.raw_log, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        track_process_group(self.proc.pid)
        self._watchdog = threading.Timer(self.timeout, self._kill)
        self._watchdog.daemon = True
        self._watchdog.start()
        if self.sock is not None:
            self._wait_socket(min(30.0, self.timeout))
        if self.ready:
            self.wait_log(self.ready, min(60.0, self.timeout))
        return self

    def _wait_socket(self, limit: float) -> None:
        # Until QEMU listens, not just until the file exists (bind comes before listen): a
        # reader that connects in between is refused.
        deadline = time.monotonic() + limit
        while not _listening(self.sock):
            if self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited ({_describe_exit(self.proc.returncode)}) before "
                                   f"opening its UART: {self.qemu_stderr()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"QEMU did not open {self.sock} within {limit} s")
            time.sleep(0.01)

    def qemu_stderr(self) -> str:
        """What QEMU wrote to its stderr (its own errors; the firmware logs through defmt)."""
        try:
            return self.stderr_path.read_text(errors="replace").strip()
        except OSError:
            return ""

    def status(self) -> Optional[int]:
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        try:
            return self.proc.wait(timeout=self.timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            return None

    def describe(self) -> str:
        text = super().describe()
        err = self.qemu_stderr()
        return text + (f"\nQEMU stderr: {err}" if err else "")

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_process_group(self.proc)

    def close(self) -> None:
        super().close()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._kill()
        if self.psram is not None:
            self.psram.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def _listening(path: Path) -> bool:
    """Whether a unix socket bound at ``path`` listens (Linux ``/proc/net/unix``: the
    ``__SO_ACCEPTCON`` flag); without ``/proc``, whether the file exists."""
    try:
        with open("/proc/net/unix") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return path.exists()
    where = str(path)
    for line in lines:
        fields = line.split()  # Num RefCount Protocol Flags Type St Inode Path
        if len(fields) >= 8 and fields[7] == where and int(fields[3], 16) & 0x10000:
            return True
    return False


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1:].upper() in units else int(text)


def track_process_group(pid: int) -> None:
    """Lists a started process group in $DMAPICKLE_HIL_PIDFILE, if set, for a rig's own check
    that nothing outlived the run (scripts/test.d/60-hil.sh uses it)."""
    path = os.environ.get("DMAPICKLE_HIL_PIDFILE")
    if path:
        with open(path, "a") as f:
            f.write(f"{pid}\n")


def kill_process_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the process group ``proc`` leads (started with ``start_new_session``), reaped."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


class BoardTarget(Target):
    """A live device: the stream is read from ``--dmapickle-source`` (rtt:// through probe-rs)."""

    kind = "board"


class ExpectTimeout(AssertionError):
    """``expect`` or ``take`` did not get what it waited for in time."""


def _ranges(seqs: List[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``3..5, 9``."""
    out, i = [], 0
    while i < len(seqs):
        j = i
        while j + 1 < len(seqs) and seqs[j + 1] == seqs[j] + 1:
            j += 1
        out.append(str(seqs[i]) if i == j else f"{seqs[i]}..{seqs[j]}")
        i = j + 1
    return ", ".join(out)


class HilStream:
    """A :class:`dmapickle.Stream` that remembers every seq it delivered, so its assertions can
    name the missing ones, and whose waits say what the target was doing when they gave up.

    ``next``/``take``/``expect``/``drain`` deliver :class:`dmapickle.Message` objects (``seq``,
    ``host_ns``, ``load()``); ``clock`` is the stream's device-clock fit.
    """

    def __init__(self, raw: Any, target: Target) -> None:
        self.raw = raw
        self.target = target
        self.received = 0
        self.first: Optional[int] = None
        self.last: Optional[int] = None
        #: (last seq before, first seq after) for every forward gap.
        self.gaps: List[tuple] = []
        #: Seqs after which the sequence restarted at 0 (a reboot), and backward jumps.
        self.restarts: List[int] = []
        self.jumps: List[tuple] = []
        self.ended = False
        self._stats: Dict[str, Any] = {}

    @property
    def clock(self) -> Any:
        """The device clock fitted against ``host_ns`` (:class:`dmapickle.DeviceClock`)."""
        return self.raw.clock

    @property
    def stats(self) -> Dict[str, Any]:
        """The reader's counters (``frames_ok``, ``lost``, ``corrupt``, ``refused`` ...)."""
        if not self.raw.closed or not self._stats:
            self._stats = self.raw.stats
        return self._stats

    def _note(self, seq: int) -> None:
        if self.last is None:
            self.first = seq
        else:
            d = (seq - self.last) & 0xFFFFFFFF
            if d == 1:
                pass
            elif seq == 0:
                self.restarts.append(self.last)
            elif 1 < d < 1 << 31:
                self.gaps.append((self.last, seq))
            else:
                self.jumps.append((self.last, seq))
        self.last = seq
        self.received += 1

    def next(self, timeout: Optional[float] = None) -> Any:
        """The next message, None at the end of the stream; ``TimeoutError`` after ``timeout``."""
        msg = self.raw.next(timeout=timeout)
        if msg is None:
            self.ended = True
            self._stats = self.raw.stats
            return None
        self._note(msg.seq)
        return msg

    def _where(self) -> str:
        seen = (f"{self.received} messages received, seq {self.first}..{self.last}"
                if self.received else "no message received")
        state = "the stream ended" if self.ended else "the stream is open"
        if self.target.kind == "qemu":
            # The UART closes as QEMU exits: give its exit status a moment to arrive.
            status = self.target.wait(1.0) if self.ended else self.target.status()
            state += f", the firmware: {_describe_exit(status)}"
        return f"{seen}; {state}"

    def _wait(self, deadline: float) -> Any:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return self.next(timeout=left)

    def take(self, n: int, timeout: float = 10.0) -> list:
        """The next ``n`` messages; fails (naming what arrived) if they are not all there within
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        out = []
        try:
            while len(out) < n:
                msg = self._wait(deadline)
                if msg is None:
                    break
                out.append(msg)
        except TimeoutError:
            pass
        if len(out) < n:
            why = "the stream ended" if self.ended else f"{timeout} s passed"
            raise ExpectTimeout(f"take({n}): got {len(out)} before {why} ({self._where()})")
        return out

    def expect(self, predicate: Callable[[Any], Any], timeout: float = 10.0) -> Any:
        """Loads messages until ``predicate(obj)`` is true and returns that ``obj`` (its message
        is :attr:`matched`); fails naming the seqs it looked at after ``timeout`` seconds or at
        the end of the stream."""
        deadline = time.monotonic() + timeout
        looked, first = 0, None
        try:
            while True:
                msg = self._wait(deadline)
                if msg is None:
                    break
                first = msg.seq if first is None else first
                looked += 1
                obj = msg.load()
                if predicate(obj):
                    self.matched = msg
                    return obj
        except TimeoutError:
            pass
        what = getattr(predicate, "__name__", repr(predicate))
        scope = f"{looked} messages (seq {first}..{self.last})" if looked else "no message"
        why = "before the stream ended" if self.ended else f"within {timeout} s"
        raise ExpectTimeout(f"expect({what}): no match among {scope} {why} ({self._where()})")

    def drain(self, timeout: float = 30.0) -> list:
        """Every message until the stream ends (the firmware's ``count=`` ran out); fails if it
        has not ended within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        out = []
        try:
            while True:
                msg = self._wait(deadline)
                if msg is None:
                    return out
                out.append(msg)
        except TimeoutError:
            raise ExpectTimeout(f"drain: the stream did not end within {timeout} s after "
                                f"{len(out)} more messages ({self._where()})") from None

    def missing(self) -> List[int]:
        """Every seq skipped between the messages delivered so far."""
        out: List[int] = []
        for before, after in self.gaps:
            out.extend((before + 1 + i) & 0xFFFFFFFF for i in range((after - before - 1) & 0xFFFFFFFF))
        return out

    def assert_no_loss(self) -> None:
        """No gap in the seqs delivered (restarts at seq 0 are not losses)."""
        lost = self.missing()
        if lost or self.jumps:
            shown = _ranges(lost[:1000]) + (" ..." if len(lost) > 1000 else "")
            gaps = "; ".join(f"after seq {a} came {b}" for a, b in self.gaps[:20])
            jumps = "".join(f"; seq jumped back from {a} to {b}" for a, b in self.jumps[:20])
            raise AssertionError(f"{len(lost)} messages lost: seq {shown} ({gaps}{jumps}); "
                                 f"{self._where()}")

    def assert_no_corrupt(self) -> None:
        """No frame failed its CRCs or was cut off."""
        n = self.stats["corrupt"]
        if n:
            lost = self.missing()
            raise AssertionError(
                f"{n} corrupt frames (CRC failed or cut off, {self.stats['bytes_skipped']} bytes "
                f"skipped); seqs missing: {_ranges(lost) or 'none'}; {self._where()}")

    def assert_no_refused(self) -> None:
        """No frame was refused (validator, limits, unmappable shared buffer)."""
        n = self.stats["refused"]
        if n:
            raise AssertionError(f"{n} frames refused, the last: {self.stats.get('last_refused')}; "
                                 f"seqs missing: {_ranges(self.missing()) or 'none'}; {self._where()}")

    def assert_continuity(self) -> None:
        """All three: no loss, nothing corrupt, nothing refused."""
        self.assert_no_loss()
        self.assert_no_corrupt()
        self.assert_no_refused()

    def describe(self) -> str:
        try:
            stats = {k: v for k, v in self.stats.items() if k not in ("events",)}
        except Exception as e:  # a closed or failed stream still gets described
            stats = f"unavailable ({e})"
        est = self.clock.estimate
        return (f"stream {self.raw.source}: {self._where()}; missing: {_ranges(self.missing()) or 'none'}"
                f"\ncounters: {stats}\nclock: {est if est else 'no estimate'}")

    def __enter__(self) -> "HilStream":
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if not self.raw.closed:
            self._stats = self.raw.stats
        self.raw.close()


_TARGETS_KEY = pytest.StashKey[List[Target]]()


def _marker(request: pytest.FixtureRequest) -> Dict[str, Any]:
    kw: Dict[str, Any] = {}
    for m in reversed(list(request.node.iter_markers(_MARKER))):  # closest marker wins
        kw.update(m.kwargs)
    return kw


@pytest.fixture
def dmapickle_start(request: pytest.FixtureRequest) -> Callable[..., Target]:
    """Factory: ``dmapickle_start(mode="shared", count=64, ...)`` starts a target with these boot
    parameters (over the run's ``--dmapickle-param`` and the marker's) and returns it; each one
    is stopped, and its files removed, when the test ends. Marker keywords (``psram``,
    ``timeout``, ``profile``, ``firmware``, ``serial``, ``hostfwd``, ``ready``: see
    :class:`QemuTarget`) may be given here too, and win over the marker's."""
    settings = Settings(request.config)
    mark = _marker(request)
    problem = settings.missing(mark.get("firmware"))
    if problem:
        pytest.fail(problem, pytrace=False)
    kind = settings.kind or "qemu"  # only a marker's firmware= names one
    targets = mark.get("targets")
    if targets is not None and kind not in targets:
        pytest.skip(f"runs on {', '.join(targets)} targets, not {kind}")
    started: List[Target] = []
    request.node.stash[_TARGETS_KEY] = started

    def start(**params: Any) -> Target:
        opts = {k: mark[k] for k in _MARKER_KEYS if k in mark}
        for k in _MARKER_KEYS:
            if k in params:
                opts[k] = params.pop(k)
        boot = dict(settings.params)
        boot.update({k: v for k, v in mark.items() if k not in _MARKER_KEYS})
        boot.update(params)
        target = settings.target(boot, opts)
        started.append(target)
        return target.start()

    yield start
    for t in reversed(started):
        t.close()


@pytest.fixture
def dmapickle_target(dmapickle_start: Callable[..., Target]) -> Target:
    """The test's target, started with its marker's boot parameters: ``.source``, ``.regions``,
    ``.log()`` (the decoded defmt log), ``.wait()`` (the firmware's exit status), ``.stream()``."""
    return dmapickle_start()


@pytest.fixture
def dmapickle_stream(dmapickle_target: Target) -> HilStream:
    """A :class:`HilStream` on ``dmapickle_target``: ``expect(predicate, timeout=)``, ``take(n)``,
    ``drain()``, ``assert_no_loss()`` / ``assert_no_corrupt()`` / ``assert_no_refused()``,
    ``clock`` (device clock fit), ``stats``. Closed when the test ends."""
    with dmapickle_target.stream() as s:
        yield s


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    targets = item.stash.get(_TARGETS_KEY, None)
    if targets and report.failed:
        for i, t in enumerate(targets):
            tag = f" {i}" if len(targets) > 1 else ""
            status = t.status()
            if t.kind == "qemu" and status is None:
                time.sleep(0.2)  # a crash's last words are on their way out of QEMU
            report.sections.append((f"dmapickle target{tag}", t.describe()))
            report.sections.append((f"dmapickle defmt log{tag} ({t.kind})", t.log()))
    return report

"""Every shell and Python example in README.md, run as a new user would (issue 19).

Fenced blocks marked `sh`, `console` and `python` are run; `rust` and `text` blocks are not.
A block may be preceded by a marker comment, `<!-- readme-test: OPTIONS -->`:

  live=inline|shared|sim   first start `scripts/live-source.sh KIND` (a fresh one for this block)
  background               run this block's commands while the next block runs; afterwards they
                           must end (by themselves, or on Ctrl-C 3 s later) with status 0
  stop-after=SECONDS       Ctrl-C (SIGINT to its process group) whatever still runs after this
                           long; it must then end cleanly (default 4 with live=, else never)
  cwd=DIR                  start in DIR (relative to the repository)
  expect="REGEX"           the block's standard output must match (re.search, multiline)
  host NAME=ADDR           NAME resolves to ADDR (the README's other machine is this one)
  skip (REASON)            not run: only for what truly cannot run here
  skip-command PREFIX (REASON)   the block's command lines starting with PREFIX are not run
  note (TEXT)              for readers of the README source

`sh` blocks run line by line (`cd DIR` lines move the block); each command must exit 0, or 0
after Ctrl-C. `console` blocks run each `$ ` line and compare its output with the lines shown
under it. `python` blocks run with this Python; after Ctrl-C, `KeyboardInterrupt` is a clean end.
The README's fixed addresses become free ones (127.0.0.1:4000 and :4001, ZeroMQ :5556) and
/dev/shm/psram a file of this run, so parallel runs do not collide. Commands run in a scratch
directory holding links to the repository's top-level entries, so `run.rec` and the like land
there. Every process started is killed when its block ends, pass or fail.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN = {"sh", "console", "python"}
MARKER = re.compile(r"^<!--\s*readme-test:(.*?)-->\s*$")
HARD_LIMIT = 600  # seconds for any one command (scripts/demo.sh builds and runs 2000 messages)


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    live: str | None = None
    background: bool = False
    stop_after: float | None = None
    cwd: str = "."
    expect: str | None = None
    hosts: dict = field(default_factory=dict)
    skip: str | None = None
    skip_commands: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"README.md:{self.line}-{self.lang}"


def parse_marker(text: str, block: Block) -> None:
    # Parenthesised reasons first (they may hold anything), then shell-like words.
    def reason(m):
        kind, arg, why = m.group(1), m.group(2), m.group(3)
        if kind == "skip":
            block.skip = why
        elif kind == "skip-command":
            block.skip_commands.append(arg.strip())
        return ""

    text = re.sub(r"\b(skip-command|skip|note)\s+([^()]*?)\s*\(([^)]*)\)", reason, text)
    words = shlex.split(text)
    while words:
        w = words.pop(0)
        key, _, value = w.partition("=")
        if key == "live" and value in ("inline", "shared", "sim"):
            block.live = value
        elif w == "background":
            block.background = True
        elif key == "stop-after":
            block.stop_after = float(value)
        elif key == "cwd":
            block.cwd = value
        elif key == "expect":
            block.expect = value
        elif w == "host" and words:
            name, _, addr = words.pop(0).partition("=")
            block.hosts[name] = addr
        else:
            raise AssertionError(f"unknown readme-test option {w!r} in {text!r}")
    if block.live and block.stop_after is None and not block.background:
        block.stop_after = 4.0


def blocks() -> list[Block]:
    lines = README.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        block = Block(start + 1, m.group(1), "\n".join(lines[start + 1 : end]) + "\n")
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        marker = MARKER.match(lines[prev]) if prev >= 0 else None
        if marker:
            parse_marker(marker.group(1), block)
        if block.lang in RUN:
            out.append(block)
        elif marker:
            raise AssertionError(f"README.md:{start + 1}: a readme-test marker on a {block.lang!r} block")
        i = end + 1
    return out


def units() -> list[tuple[Block | None, Block]]:
    """Each block to test, with the background block that runs alongside it (if any)."""
    out, pending = [], None
    for b in blocks():
        if b.background:
            assert pending is None, f"{b.name}: two background blocks in a row"
            pending = b
            continue
        out.append((pending, b))
        pending = None
    assert pending is None, f"{pending.name}: a background block needs a block after it"
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class Proc:
    """A command in its own process group, its output in files; killed with all it started."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict, log: Path) -> None:
        self.cmd, self.log = cmd, log
        self.out = open(log.with_suffix(".out"), "wb+")
        self.err = open(log.with_suffix(".err"), "wb+")
        self.p = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def ctrl_c(self) -> None:
        try:
            os.killpg(self.p.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int | None:
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        for pid in [self.p.pid, *descendants(self.p.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait(10)

    def text(self, which: str = "out") -> str:
        f = self.out if which == "out" else self.err
        f.flush()
        return Path(f.name).read_text(errors="replace")

    def describe(self) -> str:
        return f"{self.cmd}: status {self.p.returncode}\n--- stdout\n{self.text()[-3000:]}\n--- stderr\n{self.text('err')[-3000:]}"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A scratch working directory with links to the repository's top-level entries."""
    box = tmp_path_factory.mktemp("readme")
    for entry in ROOT.iterdir():
        if entry.name not in (".git",):
            (box / entry.name).symlink_to(entry)
    return box


@pytest.fixture
def env(sandbox):
    """The environment the README assumes: `dmapickle` on PATH, this Python as `python`."""
    bin_dir = Path(os.environ.get("DMAPICKLE_BIN", ROOT / "target/debug/dmapickle")).parent
    assert (bin_dir / "dmapickle").is_file(), f"{bin_dir}/dmapickle missing: run scripts/test.d/55-readme.sh"
    e = dict(os.environ)
    e["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), e["PATH"]])
    e["PYTHONUNBUFFERED"] = "1"
    return e


class Run:
    """What one README block needs: its addresses, its live source, every process it started."""

    def __init__(self, sandbox: Path, env: dict, logs: Path) -> None:
        self.sandbox, self.env, self.logs = sandbox, env, logs
        self.port, self.port2, self.zport = free_port(), free_port(), free_port()
        self.psram = Path("/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir()) / (
            f"dmapickle-readme-{os.getpid()}-{self.port}"
        )
        self.procs: list[Proc] = []

    def adapt(self, block: Block) -> str:
        text = block.text
        text = text.replace("127.0.0.1:4000", f"127.0.0.1:{self.port}")
        text = text.replace("127.0.0.1:4001", f"127.0.0.1:{self.port2}")
        text = text.replace(":5556", f":{self.zport}")
        text = text.replace("/dev/shm/psram", str(self.psram))
        for name, addr in block.hosts.items():
            text = text.replace(name, addr)
        return text

    def start(self, cmd: list[str], cwd: Path, tag: str) -> Proc:
        p = Proc(cmd, cwd, self.env, self.logs / f"{len(self.procs):02d}-{tag}")
        self.procs.append(p)
        return p

    def live(self, kind: str) -> None:
        cmd = ["scripts/live-source.sh", kind, str(self.port), "--psram", str(self.psram)]
        src = self.start(cmd, self.sandbox, f"live-{kind}")
        ready = ("QEMU waiting for connection", "listening ")
        deadline = time.monotonic() + 300  # builds the firmware or the simulator if needed
        while not any(r in src.text("err") for r in ready):
            assert src.p.poll() is None, f"the live source ended: {src.describe()}"
            assert time.monotonic() < deadline, f"the live source did not start: {src.describe()}"
            time.sleep(0.05)

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.p.poll() is None:
                p.ctrl_c()
                p.wait(10)
            p.kill()
        self.psram.unlink(missing_ok=True)


def commands(block: Block, text: str) -> list[tuple[str, str | None]]:
    """(command, expected output or None) in order; `cd` lines are commands too."""
    out: list[tuple[str, str | None]] = []
    if block.lang == "console":
        for line in text.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], ""))
            else:
                assert out, f"{block.name}: output before the first `$ ` line"
                cmd, shown = out[-1]
                out[-1] = (cmd, shown + line + "\n")
        return out
    joined = text.replace("\\\n", " ")
    for line in joined.splitlines():
        code = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if code and not any(code.startswith(p) for p in block.skip_commands):
            out.append((code, None))
    return out


def finish(p: Proc, stop_after: float | None, python: bool) -> None:
    """Waits for `p` (Ctrl-C after `stop_after`), then checks it ended cleanly."""
    status = p.wait(stop_after if stop_after is not None else HARD_LIMIT)
    interrupted = status is None and stop_after is not None
    if interrupted:
        p.ctrl_c()
        status = p.wait(15)
    assert status is not None, f"did not end{' on Ctrl-C' if interrupted else ''}: {p.describe()}"
    if python and interrupted and status != 0:
        # Python's own answer to Ctrl-C in a loop: a KeyboardInterrupt traceback, nothing else.
        err = p.text("err").rstrip()
        assert err.endswith("KeyboardInterrupt"), p.describe()
        assert "Exception ignored" not in err and "Error" not in err.replace("KeyboardInterrupt", ""), p.describe()
        return
    assert status == 0, p.describe()


def run_block(run: Run, block: Block) -> tuple[list[Proc], str]:
    """Runs `block` (its commands one after another); its processes and combined stdout."""
    text = run.adapt(block)
    cwd = run.sandbox / block.cwd
    if block.lang == "python":
        p = run.start([sys.executable, "-c", text], cwd, "python")
        return [p], ""
    procs, stdout = [], ""
    for cmd, shown in commands(block, text):
        if cmd.startswith("cd "):
            cwd = (cwd / cmd[3:].strip()).resolve()
            continue
        p = run.start(["bash", "-c", cmd], cwd, "sh")
        procs.append(p)
        if block.background:
            continue
        if shown is not None:
            p.wait(120)
            assert p.p.returncode is not None, p.describe()
            got = p.text()
            assert got.rstrip("\n") == shown.rstrip("\n"), f"$ {cmd}\n--- shown\n{shown}--- got\n{got}"
        else:
            finish(p, block.stop_after, python=False)
        stdout += p.text()
    return procs, stdout


UNITS = units()


@pytest.mark.parametrize("background,block", UNITS, ids=[b.name for _, b in UNITS])
def test_readme_example(background, block, sandbox, env, tmp_path):
    if block.skip:
        pytest.skip(block.skip)
    run = Run(sandbox, env, tmp_path)
    try:
        live = block.live or (background.live if background else None)
        if live:
            run.live(live)
        behind: list[Proc] = []
        if background:
            behind, _ = run_block(run, background)
            time.sleep(0.5)
        procs, stdout = run_block(run, block)
        if block.lang == "python":
            finish(procs[0], block.stop_after, python=True)
            stdout = procs[0].text()
        if block.expect:
            assert re.search(block.expect, stdout, re.M), f"expected /{block.expect}/ in:\n{stdout[-3000:]}"
        for p in behind:
            if p.wait(3) is None:
                p.ctrl_c()
            finish(p, 15, python=False)
            if background.expect:
                assert re.search(background.expect, p.text(), re.M), p.describe()
    finally:
        run.close()


def test_every_fenced_block_says_what_it_is():
    # An untagged or unknown fence would be skipped silently: every block is run (sh, console,
    # python) or is declared not to be run here (rust, text).
    fences = re.findall(r"^```(\w*)\s*\n(?:.*?\n)*?```", README.read_text(), re.M)
    assert fences and set(fences) <= RUN | {"rust", "text"}, sorted(set(fences))
    run = [b for b in blocks() if not b.skip]
    assert len(run) >= 8, [b.name for b in run]
    for b in blocks():
        assert b.skip is None or b.skip.strip(), f"{b.name}: skip needs a reason"


def test_the_example_pickles_are_what_the_script_writes(tmp_path):
    here = ROOT / "examples" / "pickles"
    subprocess.run([sys.executable, str(here / "make_examples.py"), str(tmp_path)], check=True, timeout=60)
    written = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in here.iterdir() if p.suffix != ".py" and p.name != "__pycache__")
    assert written == committed
    for name in written:
        assert (tmp_path / name).read_bytes() == (here / name).read_bytes(), name
    # And every example file the README names is among them.
    for name in re.findall(r"\b(\w+\.pkl)\b", README.read_text()):
        if name not in ("x.pkl",):
            assert name in committed, f"README names {name}, which examples/pickles does not hold"

"""``stream.device``: commands to the instrument on the stream's own connection.

Each call sends one command down the link (``docs/wire-format.md``, "Control") and waits for its
reply among the data frames, retrying with the same request id when no reply comes, so a
setting is applied once however many replies were lost. Replies are dicts; a command the
device cannot honour raises :class:`DeviceError` (nothing was applied), no reply at all
``TimeoutError``.
"""
from typing import Any, Dict, Optional

from . import _native

DeviceError = _native.DeviceError


class Device:
    """The instrument behind an open :class:`dmapickle.Stream`."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def info(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Firmware and wire versions, region, ``block_rows``, ``rate_hz``, ``running``,
        ``next_seq``."""
        return dict(self._native.control("info", timeout=timeout))

    def stats(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The device's counters: ``published``, ``adc_stalls``, ``overflows``, ``lent``,
        ``dropped``, ``commands``, ``bytes_skipped`` (down link), ``repeats``."""
        return dict(self._native.control("stats", timeout=timeout))

    def set(self, *, rate_hz: Optional[int] = None, block_rows: Optional[int] = None,
            timeout: Optional[float] = None) -> Dict[str, int]:
        """Change settings between two blocks (one command each, rate first). Returns
        ``{"at_seq": N}`` of the last change: block N is the first with every new setting."""
        if rate_hz is None and block_rows is None:
            raise ValueError("set() needs rate_hz= and/or block_rows=")
        reply: Dict[str, int] = {}
        for name, value in (("rate_hz", rate_hz), ("block_rows", block_rows)):
            if value is not None:
                reply = dict(self._native.control(name, int(value), timeout=timeout))
        return reply

    def start(self, timeout: Optional[float] = None) -> Dict[str, int]:
        """Resume acquisition; ``at_seq`` is the next block's seq."""
        return dict(self._native.control("start", timeout=timeout))

    def stop(self, timeout: Optional[float] = None) -> Dict[str, int]:
        """Pause acquisition once the blocks acquired went out; ``at_seq`` is the next seq."""
        return dict(self._native.control("stop", timeout=timeout))

    def ping(self, timeout: Optional[float] = None) -> Dict[str, int]:
        """``host_ns`` (sent, ``time.monotonic_ns`` clock of ``Message.host_ns``) and the
        device's ``device_us``."""
        return dict(self._native.control("ping", timeout=timeout))


class _BridgeLink:
    """The ``control(name, value, timeout)`` of a stream's native object, over the ZeroMQ REP
    socket of ``dmapickle bridge --allow-control``: one request of text (the words of
    ``dmapickle ctl``), one reply of text (``ok KEY=VALUE...`` lines, or a last line
    ``refused``/``timeout``/``error MESSAGE``)."""

    def __init__(self, endpoint: str, source: Optional[str], timeout: float) -> None:
        import zmq  # pyzmq: only this client needs it

        self._zmq = zmq
        self._ctx = zmq.Context.instance()
        self._endpoint, self._source, self._timeout = endpoint, source, timeout
        self._sock: Any = None

    def _socket(self) -> Any:
        if self._sock is None:
            self._sock = self._ctx.socket(self._zmq.REQ)
            self._sock.setsockopt(self._zmq.LINGER, 0)
            self._sock.connect(self._endpoint)
        return self._sock

    def control(self, name: str, value: Optional[int] = None,
                timeout: Optional[float] = None) -> Dict[str, Any]:
        words = {"rate_hz": f"set rate={value}", "block_rows": f"set rows={value}"}.get(name, name)
        if self._source is not None:
            words = f"@{self._source} {words}"
        sock = self._socket()
        sock.send(words.encode())
        # The bridge retries on the device link itself (same request id, applied once); this
        # side never resends, so it waits longer than the bridge's retries take.
        wait = self._timeout if timeout is None else max(self._timeout, 10 * timeout)
        if not sock.poll(int(wait * 1000)):
            # A REQ socket without its reply cannot send again: start a fresh one next time.
            sock.close(linger=0)
            self._sock = None
            raise TimeoutError(f"no reply from the bridge at {self._endpoint} within {wait} s "
                               "(is it running with --allow-control on this endpoint?)")
        lines = sock.recv().decode("utf-8", "replace").splitlines() or ["error empty reply"]
        kind, _, text = lines[-1].partition(" ")
        if kind == "refused":
            raise DeviceError(text)
        if kind == "timeout":
            raise TimeoutError(text)
        if kind != "ok":
            raise ValueError(f"the bridge refused the request {words!r}: {text}")
        return {k: _value(v) for k, _, v in (w.partition("=") for w in text.split())}


def _value(v: str) -> Any:
    if v in ("true", "false"):
        return v == "true"
    try:
        return int(v)
    except ValueError:
        return v


def bridge_control(endpoint: str, source: Optional[str] = None, timeout: float = 10.0) -> Device:
    """The instrument behind ``dmapickle bridge --allow-control ENDPOINT``, with the
    :class:`Device` API of ``stream.device`` (needs pyzmq). ``source``: the bridge's source name
    (``--name``; default its first source). ``timeout``: seconds to wait for each reply (the
    bridge retries on the device link meanwhile; nothing is resent from here, so a setting is
    never applied twice). A malformed request raises ``ValueError`` with the bridge's reason."""
    return Device(_BridgeLink(endpoint, source, timeout))

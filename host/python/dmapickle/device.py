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

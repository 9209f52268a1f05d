"""Zero-copy pickle protocol 5 messages from embedded controllers into Python and numpy.

A device encodes each message as a small protocol-5 pickle plus out-of-band buffers (PEP 574)
and sends it as a frame over a serial line, a socket, a file or a shared memory region. This
package reads those frames, proves in Rust that each pickle can only build plain data and numpy
arrays over the buffers that came with it, and gives you the message::

    import dmapickle
    with dmapickle.open("tcp://127.0.0.1:4000") as stream:
        for msg in stream:
            data = msg.load()          # e.g. {'seq': 7, 'adc': array(..., dtype=int16)}

``msg.load()`` builds numpy arrays whose memory *is* the received buffer (or the mapped shared
region): nothing is copied after the read. The memory stays valid as long as any array or view
of it exists; a shared-region buffer is handed back to the device when the last one is dropped.

Defence in depth: every pickle is validated in Rust before Python sees it. A pickle made of the
common opcodes is then built directly in Rust (the constructors ``_pickle.c`` would call, each
global resolved once through CPython's own ``find_class`` under the guard below, and only if
allowlisted; ``DMAPICKLE_DIRECT_LOAD=0`` turns this off). Any other is loaded by CPython's
``pickle.loads`` while an audit hook refuses every global outside the allowlist (the
``pickle.find_class`` audit event comes before any import); where that hook cannot be installed,
or with ``DMAPICKLE_AUDIT_GUARD=0``, by an ``Unpickler`` whose ``find_class`` only returns
allowlisted globals.
"""

from __future__ import annotations

import pickle
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import _native
from .clock import ClockEstimate, DeviceClock

__all__ = [
    "ALLOWED_GLOBALS",
    "ClockEstimate",
    "DeviceClock",
    "DeviceError",
    "Message",
    "RejectedError",
    "RestrictedUnpickler",
    "Stream",
    "WaitingWarning",
    "bridge_control",
    "check",
    "export",
    "loads",
    "open",
    "read_frame",
]

#: Raised when the validator refuses a pickle (or a frame is refused before it): a ValueError.
#: As data, where the validator refused a pickle: ``.offset`` (byte offset in the pickle, as
#: ``pickletools.dis`` counts), ``.opcode`` (its pickletools name, e.g. ``"STACK_GLOBAL"``),
#: ``.reason`` (one English phrase) and ``.limit`` (the keyword argument of the bound exceeded,
#: e.g. ``"max_depth"``); each is None where not applicable.
RejectedError = _native.RejectedError

#: Warned (once per stream) when a live source delivered no message within 2 s of opening it;
#: the message says what it waits for (a device to connect, or a first frame).
WaitingWarning = _native.WaitingWarning
#: A command the device answered with an error (nothing was applied): see :mod:`dmapickle.device`.
DeviceError = _native.DeviceError


def __dir__() -> List[str]:
    """The public API only (PEP 562), not the typing and stdlib names this module imports."""
    return sorted(__all__)

#: Globals a pickle may name, per validation profile (the Rust validator's list).
ALLOWED_GLOBALS: Dict[str, frozenset] = {
    "strict": frozenset({("builtins", "complex"), ("numpy", "ndarray")}),
    "general": frozenset(
        {
            ("builtins", "complex"),
            ("numpy", "ndarray"),
            ("__builtin__", "complex"),
            ("builtins", "set"),
            ("__builtin__", "set"),
            ("builtins", "frozenset"),
            ("__builtin__", "frozenset"),
            ("builtins", "bytes"),
            ("__builtin__", "bytes"),
            ("builtins", "bytearray"),
            ("__builtin__", "bytearray"),
            ("_codecs", "encode"),
            ("numpy", "dtype"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
        }
    ),
}

Global = Union[str, Tuple[str, str]]


class RestrictedUnpickler(pickle.Unpickler):
    """An ``Unpickler`` whose ``find_class`` returns only globals in ``allowed``.

    The second line of defence: the Rust validator already refused anything else.
    """

    allowed: frozenset = ALLOWED_GLOBALS["general"]

    def __init__(self, file: Any, *, allowed: Optional[frozenset] = None, buffers: Iterable[Any] = ()) -> None:
        super().__init__(file, buffers=buffers)
        if allowed is not None:
            self.allowed = allowed

    #: Allowlisted globals already resolved, per subclass made by ``_unpickler`` (one per
    #: allowlist): a stream's messages name the same few globals, so after the first message
    #: each lookup is one dict probe instead of the import machinery. Only pairs that passed the
    #: allowlist check are ever stored, so everything else is still refused below.
    _resolved: Optional[Dict[Tuple[str, str], Any]] = None

    def find_class(self, module: str, name: str) -> Any:
        resolved = self._resolved
        if resolved is not None:
            obj = resolved.get((module, name))
            if obj is not None:
                return obj
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"global {module}.{name} is not in the dmapickle allowlist")
        obj = super().find_class(module, name)
        if resolved is not None:
            resolved[(module, name)] = obj
        return obj


_UNPICKLERS: Dict[frozenset, type] = {}


def _unpickler(allowed: frozenset) -> type:
    """A RestrictedUnpickler subclass fixed to ``allowed`` whose constructor is the C one."""
    cls = _UNPICKLERS.get(allowed)
    if cls is None:
        cls = type(
            "RestrictedUnpickler",
            (RestrictedUnpickler,),
            {
                "allowed": allowed,
                "_resolved": {},
                "__init__": pickle.Unpickler.__init__,
                "__slots__": (),
            },
        )
        _UNPICKLERS[allowed] = cls
    return cls


def _globals(allow: Optional[Iterable[Global]]) -> List[Tuple[str, str]]:
    out = []
    for g in allow or ():
        if isinstance(g, str):
            module, sep, name = g.rpartition(":")
            if not sep or not module or not name:
                raise ValueError(f"allow entries are 'module:name' or (module, name), not {g!r}")
            out.append((module, name))
        else:
            module, name = g
            out.append((str(module), str(name)))
    return out


def _regions(regions: Union[None, Mapping[int, str], Iterable[str]]) -> List[Tuple[int, str]]:
    if not regions:
        return []
    if isinstance(regions, Mapping):
        return [(int(k), str(v)) for k, v in regions.items()]
    out = []
    for r in regions:
        rid, sep, path = str(r).partition("=")
        if not sep or not rid.isdigit():
            raise ValueError(f"regions are {{id: path}} or 'ID=PATH' strings, not {r!r}")
        out.append((int(rid), path))
    return out


#: One delivered message (made in Rust): ``seq``, ``pickle`` (bytes), ``buffers`` (list of
#: memoryview), ``shared`` (per buffer: in a shared region?), ``host_ns``. ``buffers[i]`` is a
#: zero-copy view of the i-th out-of-band buffer, read-only when the frame's descriptor says so;
#: ``load()`` unpickles with those buffers, allowing only the stream's allowlisted globals.
Message = _native.Message

_LOADERS: Dict[frozenset, "_native.Loader"] = {}


def _loader(allowed: frozenset) -> "_native.Loader":
    """The loader for one allowlist: CPython's ``pickle.loads`` with every global outside
    ``allowed`` refused by dmapickle's audit guard (host/src/python/loader.rs), or, where the
    guard is unavailable or ``DMAPICKLE_AUDIT_GUARD=0``, the restricted Unpickler per message."""
    loader = _LOADERS.get(allowed)
    if loader is None:
        allowed3 = _protocol3(allowed)
        loader = _LOADERS[allowed] = _native.Loader(
            allowed, _unpickler(allowed), allowed3, _unpickler(allowed3)
        )
    return loader


def _protocol3(allowed: frozenset) -> frozenset:
    """``allowed`` as it stands for pickles of protocol 3 and higher: without the Python 2 names
    that CPython's ``find_class`` maps to Python 3 ones (``_compat_pickle``) only below
    protocol 3. Above, it would import them as named (a ``__builtin__`` module on sys.path)."""
    import _compat_pickle

    return frozenset(
        (m, n) for m, n in allowed
        if m not in _compat_pickle.IMPORT_MAPPING and (m, n) not in _compat_pickle.NAME_MAPPING
    )


class Stream:
    """Messages from a source, read by a background thread. Iterate it; ``with`` closes it."""

    def __init__(
        self,
        source: str,
        *,
        regions: Union[None, Mapping[int, str], Iterable[str]] = None,
        allow: Optional[Iterable[Global]] = None,
        profile: str = "general",
        reconnect: bool = True,
        queue: int = 64,
        trust_link: bool = False,
        max_frame: Optional[int] = None,
        max_pickle: Optional[int] = None,
        max_buffers: Optional[int] = None,
        **limits: int,
    ) -> None:
        extra = _globals(allow)
        if profile not in ALLOWED_GLOBALS:
            raise ValueError(f"profile must be 'general' or 'strict', not {profile!r}")
        loader = _loader(ALLOWED_GLOBALS[profile] | frozenset(extra))
        self.source = source
        self._native = _native.Stream(
            source, _regions(regions), extra, profile, reconnect, queue, loader, trust_link=trust_link,
            max_frame=max_frame, max_pickle=max_pickle, max_buffers=max_buffers,
            limits=_limits(limits),
        )
        self._native.clock = DeviceClock()

    @property
    def clock(self) -> DeviceClock:
        """The device clock against ``host_ns``, fitted from the ``t_us`` of every loaded
        message (``clock.estimate``: offset, drift and their uncertainty; see
        :mod:`dmapickle.clock`). Replace it with ``DeviceClock(field, unit_s)`` for another
        timestamp field: messages taken after that feed the new one."""
        return self._native.clock

    @clock.setter
    def clock(self, clock: DeviceClock) -> None:
        self._native.clock = clock

    def next(self, timeout: Optional[float] = None) -> Optional[Message]:
        """The next message, or None at the end of the stream.

        Waits with the GIL released; raises ``TimeoutError`` after ``timeout`` seconds and
        ``OSError`` if the source fails. Ctrl-C raises ``KeyboardInterrupt`` while waiting.
        """
        return self._native.next(timeout)

    def __iter__(self) -> Iterator[Message]:
        # The native stream is its own iterator: `for msg in stream` takes each message
        # without a Python frame.
        return self._native

    def __next__(self) -> Message:
        return next(self._native)

    def close(self) -> None:
        """Stop reading. Messages (and arrays) already delivered stay valid."""
        self._native.close()

    @property
    def closed(self) -> bool:
        """Whether the stream ended or was closed."""
        return bool(self._native.closed)

    @property
    def device(self) -> "Device":
        """Commands to the instrument on this stream's connection (:mod:`dmapickle.device`):
        ``info()``, ``set(rate_hz=..., block_rows=...)``, ``stats()``, ``start()``, ``stop()``,
        ``ping()``."""
        from .device import Device

        return Device(self._native)

    @property
    def stats(self) -> Dict[str, Any]:
        """Reader counters (docs/wire-format.md, "Counters"): frames_ok, corrupt, refused, lost,
        restarts, seq_jumps, bytes_skipped, bytes_read; and disconnects, reconnects,
        last_refused, events."""
        return dict(self._native.stats())

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<dmapickle.Stream {self.source!r}{' closed' if self.closed else ''}>"


def open(  # noqa: A001 - the package's entry point, like io.open
    source: str,
    *,
    regions: Union[None, Mapping[int, str], Iterable[str]] = None,
    allow: Optional[Iterable[Global]] = None,
    profile: str = "general",
    reconnect: bool = True,
    queue: int = 64,
    trust_link: bool = False,
    max_frame: Optional[int] = None,
    max_pickle: Optional[int] = None,
    max_buffers: Optional[int] = None,
    **limits: int,
) -> Stream:
    """Open a source and return an iterable :class:`Stream` of :class:`Message`.

    ``source``: ``tcp://HOST:PORT``, ``unix:///PATH``, ``serial:///dev/ttyX?baud=N``,
    ``file://PATH`` or a path (a recording), ``-`` (stdin), ``rtt://CHIP`` (with probe-rs).
    ``regions``: shared regions the frames may name, ``{id: path}`` or ``["ID=PATH"]``.
    ``allow``: extra globals (``"module:name"`` or tuples) for the validator and the unpickler.
    ``profile``: ``"general"`` (CPython/numpy pickles too) or ``"strict"`` (encoder grammar).
    ``reconnect``: retry dropped socket/serial connections with backoff.
    ``trust_link``: accept frames without a data CRC (``NO_DATA_CRC``), for links that check
    their own payload (TCP, USB, PCIe); refused otherwise.
    ``max_frame`` (default 256 MiB), ``max_pickle`` (1 MiB), ``max_buffers`` (4096): the
    reader's limits, inclusive; a frame over one is refused without being read.
    ``max_len``, ``max_depth``, ``max_alloc``, ``max_collisions``, ``max_array_bytes``: the
    validator's bounds on what loading a pickle may cost (see :func:`check`).
    """
    return Stream(
        source, regions=regions, allow=allow, profile=profile, reconnect=reconnect, queue=queue,
        trust_link=trust_link, max_frame=max_frame, max_pickle=max_pickle, max_buffers=max_buffers,
        **limits,
    )


_LIMITS = ("max_len", "max_depth", "max_alloc", "max_collisions", "max_array_bytes", "max_expansion")


def _limits(limits: Mapping[str, Optional[int]]) -> Optional[dict]:
    """The validator limits given as keyword arguments (None: the default), checked by name."""
    unknown = sorted(set(limits) - set(_LIMITS))
    if unknown:
        raise TypeError(
            f"unknown keyword argument(s) {', '.join(unknown)}; the validator's limits are "
            + ", ".join(_LIMITS)
        )
    given = {k: int(v) for k, v in limits.items() if v is not None}
    for k, v in given.items():
        if v < 0:
            raise ValueError(f"{k} must be >= 0, not {v}")
    return given or None


def _frame_bytes(frame: Any) -> bytes:
    """The bytes of ``frame``: a bytes-like object, or a binary file object read to its end."""
    if hasattr(frame, "read"):
        frame = frame.read()
        if isinstance(frame, str):
            raise TypeError("read_frame needs a binary file (open it with 'rb'), not a text one")
    try:
        return bytes(memoryview(frame))
    except TypeError:
        raise TypeError(
            "read_frame takes a frame's bytes (bytes, bytearray, memoryview, ...) or a binary "
            f"file object with .read(), not {type(frame).__name__}; for a live source or a "
            "recording of many frames use dmapickle.open()"
        ) from None


def read_frame(
    frame: Any,
    *,
    regions: Union[None, Mapping[int, str], Iterable[str]] = None,
    allow: Optional[Iterable[Global]] = None,
    profile: str = "general",
    **limits: int,
) -> Message:
    """Decode and validate the first intact frame in ``frame``; raises ``RejectedError``.

    ``frame``: bytes-like, or a binary file object (anything with ``.read()``, such as
    ``io.BytesIO`` or ``open(path, "rb")``), which is read to its end. ``limits``: as for
    :func:`check`.
    """
    extra = _globals(allow)
    loader = _loader(ALLOWED_GLOBALS[profile] | frozenset(extra))
    return _native.read_frame(
        _frame_bytes(frame), _regions(regions), extra, profile, loader, limits=_limits(limits)
    )


def loads(
    frame: Any,
    *,
    regions: Union[None, Mapping[int, str], Iterable[str]] = None,
    allow: Optional[Iterable[Global]] = None,
    profile: str = "general",
    **limits: int,
) -> Any:
    """The object carried by one frame (``read_frame(frame).load()``)."""
    return read_frame(frame, regions=regions, allow=allow, profile=profile, **limits).load()


def check(
    pickle_bytes: bytes,
    buffers: Sequence[Any] = (),
    *,
    allow: Optional[Iterable[Global]] = None,
    profile: str = "general",
    **limits: int,
) -> str:
    """Validate a pickle and its out-of-band buffers (or their lengths).

    Returns a one-line summary of what it builds, e.g.
    ``dict{seq:int, adc:ndarray<i2>(1024,4) <- buffer 0 (8192 B, read-only)}``;
    raises :class:`RejectedError` naming the byte offset, opcode and reason.

    Acceptance also bounds what loading the pickle costs; the limits are keyword arguments
    (defaults in parentheses, all inclusive): ``max_len`` (64 MiB of pickle), ``max_depth``
    (100 levels of nesting), ``max_alloc`` (256 MiB allocated by ``pickle.loads``),
    ``max_collisions`` (32 keys of one dict/set sharing one hash), ``max_array_bytes`` (1 GiB
    logical size of one array), ``max_expansion`` (64: what shared references may repeat, as a
    multiple of the pickle's length). A rejection by a limit names it and the value found, e.g.
    ``nesting depth 101 exceeds the limit 100 (--max-depth)``.
    """
    lens = [b if isinstance(b, int) else memoryview(b).nbytes for b in buffers]
    return _native.check(
        bytes(pickle_bytes), lens, _globals(allow), profile, limits=_limits(limits)
    )


# HDF5 / Zarr / plain-pickle export (h5py and zarr are imported only when used): see _export.py.
from ._export import export  # noqa: E402
from .device import bridge_control  # noqa: E402

"""Type hints for dmapickle (see the package docstring for the story)."""

import pickle
from .clock import ClockEstimate as ClockEstimate, DeviceClock as DeviceClock
from .device import Device as Device, bridge_control as bridge_control
from typing import BinaryIO, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

Global = Union[str, Tuple[str, str]]
Regions = Union[None, Mapping[int, str], Iterable[str]]

class RejectedError(ValueError):
    """A pickle or frame refused by the validator; the message says where and why, and the
    attributes say it as data (each None where not applicable, e.g. a frame refused before its
    pickle was validated)."""

    offset: Optional[int]
    """Byte offset of the refused opcode in the pickle (the offsets of ``pickletools.dis``)."""
    opcode: Optional[str]
    """The refused opcode's pickletools name, e.g. ``"STACK_GLOBAL"`` (None for a byte that is no opcode)."""
    reason: Optional[str]
    """Why, as one English phrase, e.g. ``"global not in the allowlist"``."""
    limit: Optional[str]
    """For a bound exceeded: the keyword argument that sets it, e.g. ``"max_depth"``."""

class DeviceError(RuntimeError):
    """A command the device answered with an error: nothing was applied."""

class WaitingWarning(UserWarning):
    """A live source delivered no message within 2 s of opening; the message says what it waits for."""

ALLOWED_GLOBALS: Dict[str, frozenset]

class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, *, allowed: frozenset, buffers: Iterable[Any] = ...) -> None: ...
    def find_class(self, module: str, name: str) -> Any: ...

class Message:
    """One delivered message."""

    seq: int
    """The frame's sequence number."""
    pickle: bytes
    """The protocol-5 pickle."""
    buffers: List[memoryview]
    """Zero-copy views of the out-of-band buffers, read-only where the descriptor says so."""
    shared: List[bool]
    """Per buffer: whether it lies in a shared region (released when its last view dies)."""
    host_ns: int
    """When the frame's last byte was read: ns of the host's monotonic clock (``time.monotonic_ns()``)."""
    def load(self) -> Any:
        """Unpickle with this message's buffers: ``pickle.loads`` with every global outside the
        stream's allowlist refused (or the restricted Unpickler, ``DMAPICKLE_AUDIT_GUARD=0``)."""

class Stream:
    """Messages from a source, read by a background thread; iterable, a context manager."""

    source: str
    clock: DeviceClock
    """The device clock (``t_us`` of loaded messages) fitted against ``host_ns``."""
    def __init__(
        self,
        source: str,
        *,
        regions: Regions = ...,
        allow: Optional[Iterable[Global]] = ...,
        profile: str = ...,
        reconnect: bool = ...,
        queue: int = ...,
        trust_link: bool = ...,
        max_frame: Optional[int] = ...,
        max_pickle: Optional[int] = ...,
        max_buffers: Optional[int] = ...,
        max_len: Optional[int] = ...,
        max_depth: Optional[int] = ...,
        max_alloc: Optional[int] = ...,
        max_collisions: Optional[int] = ...,
        max_array_bytes: Optional[int] = ...,
        max_expansion: Optional[int] = ...,
    ) -> None: ...
    def next(self, timeout: Optional[float] = ...) -> Optional[Message]:
        """The next message or None at the end; TimeoutError after `timeout` s; OSError if the source fails."""
    def __iter__(self) -> Iterator[Message]: ...
    def __next__(self) -> Message: ...
    def close(self) -> None:
        """Stop reading; delivered messages and arrays stay valid."""
    @property
    def closed(self) -> bool: ...
    @property
    def device(self) -> Device:
        """Commands to the instrument on this connection: info, set, stats, start, stop, ping."""
    @property
    def stats(self) -> Dict[str, Any]:
        """frames_ok, corrupt, lost, bytes_skipped, restarts, seq_jumps, refused, bytes_read,
        disconnects, reconnects, last_refused, events."""
    def __enter__(self) -> "Stream": ...
    def __exit__(self, *exc: Any) -> None: ...

def open(
    source: str,
    *,
    regions: Regions = ...,
    allow: Optional[Iterable[Global]] = ...,
    profile: str = ...,
    reconnect: bool = ...,
    queue: int = ...,
    trust_link: bool = ...,
    max_frame: Optional[int] = ...,
    max_pickle: Optional[int] = ...,
    max_buffers: Optional[int] = ...,
    max_len: Optional[int] = ...,
    max_depth: Optional[int] = ...,
    max_alloc: Optional[int] = ...,
    max_collisions: Optional[int] = ...,
    max_array_bytes: Optional[int] = ...,
    max_expansion: Optional[int] = ...,
) -> Stream:
    """Open tcp://HOST:PORT, unix:///PATH, serial:///dev/ttyX?baud=N, file://PATH or a path, `-`, rtt://CHIP."""

def read_frame(
    frame: Union[bytes, bytearray, memoryview, BinaryIO],
    *,
    regions: Regions = ...,
    allow: Optional[Iterable[Global]] = ...,
    profile: str = ...,
    max_len: Optional[int] = ...,
    max_depth: Optional[int] = ...,
    max_alloc: Optional[int] = ...,
    max_collisions: Optional[int] = ...,
    max_array_bytes: Optional[int] = ...,
    max_expansion: Optional[int] = ...,
) -> Message:
    """Decode and validate the first intact frame in `frame` (bytes-like, or a binary file read to its end)."""

def loads(
    frame: Union[bytes, bytearray, memoryview, BinaryIO],
    *,
    regions: Regions = ...,
    allow: Optional[Iterable[Global]] = ...,
    profile: str = ...,
    max_len: Optional[int] = ...,
    max_depth: Optional[int] = ...,
    max_alloc: Optional[int] = ...,
    max_collisions: Optional[int] = ...,
    max_array_bytes: Optional[int] = ...,
    max_expansion: Optional[int] = ...,
) -> Any:
    """The object carried by one frame."""

def check(
    pickle_bytes: bytes,
    buffers: Sequence[Any] = ...,
    *,
    allow: Optional[Iterable[Global]] = ...,
    profile: str = ...,
    max_len: Optional[int] = ...,
    max_depth: Optional[int] = ...,
    max_alloc: Optional[int] = ...,
    max_collisions: Optional[int] = ...,
    max_array_bytes: Optional[int] = ...,
    max_expansion: Optional[int] = ...,
) -> str:
    """Validate a pickle and its buffers (or their lengths); the summary line, or RejectedError.
    Limits (inclusive): max_len 64 MiB, max_depth 100, max_alloc 256 MiB, max_collisions 32,
    max_array_bytes 1 GiB, max_expansion 64."""

def export(
    source: Union[str, Stream],
    path: str,
    *,
    format: Optional[str] = ...,
    pickle: bool = ...,
    overwrite: bool = ...,
    count: Optional[int] = ...,
    strict_layout: bool = ...,
    host_time: Optional[bool] = ...,
    chunk_bytes: int = ...,
    flush_interval: float = ...,
    quiet: bool = ...,
    **open_kw: Any,
) -> Dict[str, Any]:
    """Export every message to OUT.h5 (h5py), OUT.zarr (zarr 3) or a directory of plain pickles
    (pickle=True); returns messages, layouts, bytes, seconds, interrupted, stats."""

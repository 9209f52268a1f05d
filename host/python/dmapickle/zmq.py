"""Consume ``dmapickle bridge`` over ZeroMQ, with only pyzmq installed.

Every bridged message is ``[header, pickle, buf0, buf1, ...]`` (``stats`` messages:
``[header, json]``). The header starts with its topic, ``data/NAME/`` or ``stats/NAME/``, so
``sub.subscribe(b"data/dev0/")`` picks one source's data with ZeroMQ's own prefix filter; after a
0x00 byte come 40 fixed bytes (docs/bridge.md)::

    from dmapickle.zmq import subscribe, receive, Gaps
    sub = subscribe("tcp://acquisition-host:5556", sources=["dev0"])
    gaps = Gaps()
    for msg in receive(sub, gaps=gaps):          # data messages; stats ones update `gaps`
        data = msg.load()                        # zero-copy on the ZeroMQ frames
        ...
    print(gaps.lost)                             # {'dev0': 3}: published for us, never received

This module imports nothing but the standard library and pyzmq (``import zmq`` happens when a
function needs it): copy the file next to a consumer that has no dmapickle, or read its header
layout in ``HEADER`` and write the ten lines yourself.
"""

from __future__ import annotations

import json
import pickle as _pickle
import struct
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence

__all__ = [
    "DATA",
    "FINAL",
    "HEADER",
    "RESTART",
    "STATS",
    "VERSION",
    "Gaps",
    "Header",
    "Message",
    "parse_header",
    "pull",
    "receive",
    "subscribe",
    "topic",
]

#: The fixed part after the topic's 0x00: version u8, kind u8, flags u16, device seq u32,
#: bridge seq u64, bridge receive time u64 (ns since the Unix epoch), the link's ``lost`` and
#: ``refused`` counters u64, all little-endian: 40 bytes.
HEADER = struct.Struct("<BBHIQQQQ")
#: The header version this module reads.
VERSION = 1
#: ``kind``: a pickle and its buffers follow (topic ``data/NAME/``).
DATA = 0
#: ``kind``: one JSON frame with the bridge's counts for the source follows (``stats/NAME/``).
STATS = 1
#: ``flags`` bit: the device (re)started its sequence counter with this message.
RESTART = 1
#: ``flags`` bit: the source ended; this is its last stats message.
FINAL = 2

_KINDS = {DATA: "data", STATS: "stats"}


class Header(NamedTuple):
    """A decoded header frame."""

    topic: bytes
    source: str
    kind: int
    flags: int
    device_seq: int
    bridge_seq: int
    recv_ns: int
    link_lost: int
    refused: int


def topic(source: Optional[str] = None, kind: str = "data") -> bytes:
    """The subscription prefix for ``kind`` messages of ``source`` (every source when None)."""
    if kind not in _KINDS.values():
        raise ValueError(f"kind must be 'data' or 'stats', got {kind!r}")
    return f"{kind}/".encode() + (f"{source}/".encode() if source is not None else b"")


def parse_header(frame: Any) -> Header:
    """Decode the first frame of a bridged message (bytes, memoryview or a zmq.Frame)."""
    raw = bytes(getattr(frame, "buffer", frame))
    name, sep, rest = raw.partition(b"\0")
    if not sep or len(rest) != HEADER.size or rest[0] != VERSION:
        raise ValueError(
            f"not a dmapickle bridge header (version {VERSION}, {HEADER.size} bytes after the "
            f"topic): {raw[:80]!r}; is the bridge older or newer than this module?"
        )
    version, kind, flags, dseq, bseq, recv_ns, lost, refused = HEADER.unpack(rest)
    parts = name.split(b"/")
    if len(parts) != 3 or parts[2] or _KINDS.get(kind) != parts[0].decode("ascii", "replace"):
        raise ValueError(f"malformed topic {name!r} for kind {kind}")
    return Header(name, parts[1].decode("ascii"), kind, flags, dseq, bseq, recv_ns, lost, refused)


class Message:
    """One bridged message: ``header``, and the ``frames`` after it."""

    __slots__ = ("header", "frames")

    def __init__(self, frames: Sequence[Any]) -> None:
        self.header = parse_header(frames[0])
        self.frames = frames[1:]

    @property
    def pickle(self) -> Any:
        """The pickle (data messages)."""
        return _buffer(self.frames[0])

    @property
    def buffers(self) -> List[Any]:
        """The out-of-band buffers (data messages), as memoryviews over the received frames."""
        return [_buffer(f) for f in self.frames[1:]]

    def load(self, unpickler: type = _pickle.Unpickler) -> Any:
        """The message's value: numpy arrays over the received frames, no copy. Pass
        ``dmapickle.RestrictedUnpickler`` when the network between bridge and here is not
        trusted (the bridge validated the pickle, not what reached you)."""
        import io

        return unpickler(io.BytesIO(self.pickle), buffers=self.buffers).load()

    @property
    def stats(self) -> Dict[str, Any]:
        """The bridge's counts (stats messages): ``published``, ``delivered``, ``lost``, ..."""
        return json.loads(bytes(_buffer(self.frames[0])))

    def __repr__(self) -> str:
        h = self.header
        return f"<dmapickle.zmq.Message {h.topic.decode()} device_seq={h.device_seq} bridge_seq={h.bridge_seq}>"


def _buffer(frame: Any) -> Any:
    return getattr(frame, "buffer", frame)


class _Track:
    __slots__ = ("next_bridge", "last_device", "received", "lost", "device_gaps", "published", "ended")

    def __init__(self) -> None:
        self.next_bridge: Optional[int] = None
        self.last_device: Optional[int] = None
        self.received = self.lost = self.device_gaps = 0
        self.published: Optional[int] = None
        self.ended = False


class Gaps:
    """Counts, per source, what a subscriber missed.

    ``lost[name]``: data messages the bridge published that did not reach this subscriber
    (bridge seq gaps, and after the final stats message also the tail it never saw; messages
    before the first one received are not counted: a subscriber that joins late did not lose
    them). ``device_gaps[name]``: device seq gaps between received messages, which include
    those plus whatever the device link lost or the bridge refused (``link_lost`` and ``refused``
    in the header count those two at the bridge). With ``--zmq-push`` and several consumers each
    sees only its share, so gaps are only meaningful for the union.
    """

    def __init__(self) -> None:
        self._t: Dict[str, _Track] = {}

    def _track(self, source: str) -> _Track:
        return self._t.setdefault(source, _Track())

    def update(self, msg: Message) -> int:
        """Account for ``msg``; returns how many data messages of its source were newly found
        missing before it."""
        h = msg.header
        t = self._track(h.source)
        if h.kind == STATS:
            if h.flags & FINAL:
                t.published, t.ended = msg.stats["published"], True
                if t.next_bridge is not None and t.published > t.next_bridge:
                    missed = t.published - t.next_bridge
                    t.lost += missed
                    t.next_bridge = t.published
                    return missed
            return 0
        missed = 0
        if t.next_bridge is not None and h.bridge_seq > t.next_bridge:
            missed = h.bridge_seq - t.next_bridge
            t.lost += missed
        if t.last_device is not None and not h.flags & RESTART:
            t.device_gaps += (h.device_seq - t.last_device - 1) & 0xFFFFFFFF
        t.next_bridge, t.last_device = h.bridge_seq + 1, h.device_seq
        t.received += 1
        return missed

    @property
    def lost(self) -> Dict[str, int]:
        return {s: t.lost for s, t in self._t.items()}

    @property
    def device_gaps(self) -> Dict[str, int]:
        return {s: t.device_gaps for s, t in self._t.items()}

    @property
    def received(self) -> Dict[str, int]:
        return {s: t.received for s, t in self._t.items()}

    @property
    def ended(self) -> Dict[str, bool]:
        """Whether the final stats message of each source arrived."""
        return {s: t.ended for s, t in self._t.items()}

    def __repr__(self) -> str:
        return f"Gaps(lost={self.lost}, device_gaps={self.device_gaps}, received={self.received})"


def subscribe(
    endpoint: str,
    sources: Optional[Iterable[str]] = None,
    *,
    stats: bool = True,
    context: Any = None,
    hwm: int = 1000,
) -> Any:
    """A SUB socket connected to a ``--zmq-pub`` bridge, subscribed to the data (and, with
    ``stats``, the stats) of ``sources`` (every source when None)."""
    import zmq

    sock = (context or zmq.Context.instance()).socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, hwm)
    kinds = ["data", "stats"] if stats else ["data"]
    for kind in kinds:
        for s in sources if sources is not None else [None]:
            sock.setsockopt(zmq.SUBSCRIBE, topic(s, kind))
    sock.connect(endpoint)
    return sock


def pull(endpoint: str, *, context: Any = None, hwm: int = 1000) -> Any:
    """A PULL socket connected to a ``--zmq-push`` bridge."""
    import zmq

    sock = (context or zmq.Context.instance()).socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.connect(endpoint)
    return sock


def receive(
    sock: Any,
    *,
    gaps: Optional[Gaps] = None,
    timeout: Optional[float] = None,
    until_final: bool = True,
    stats: bool = False,
) -> Iterator[Message]:
    """Yield the data messages arriving on ``sock`` (zero-copy frames), feeding ``gaps``.

    Ends when every source seen so far sent its final stats message (``until_final``), or when
    nothing arrived for ``timeout`` seconds. ``stats=True`` yields the stats messages too.
    """
    import zmq

    gaps = gaps if gaps is not None else Gaps()
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while True:
        if timeout is not None and not poller.poll(timeout * 1000):
            return
        msg = Message(sock.recv_multipart(copy=False))
        gaps.update(msg)
        if msg.header.kind == DATA or stats:
            yield msg
        if until_final and msg.header.flags & FINAL and all(gaps.ended.values()):
            return

"""Export a recording or a live source to HDF5, Zarr v3 or plain pickle files.

``dmapickle.export(source, path)`` reads every message of ``source`` (a recording, any source URI
``dmapickle.open`` takes, or an open :class:`dmapickle.Stream`) and writes it in a format the
people downstream already read, with their own libraries and no dmapickle:

- ``OUT.h5`` (h5py) or ``OUT.zarr`` (zarr-python 3, a Zarr v3 directory store): each array
  field of the messages becomes one chunked dataset appended along a new first axis (row ``i``
  is message ``i``), each scalar field (int, float, bool, complex, str) a 1-d dataset beside it,
  and three columns per message: ``frame_seq`` (the frame's sequence number), ``message_index``
  (0, 1, 2, ... over the whole export) and, for live sources, ``host_time`` (Unix time the
  message was read). Nested dicts become groups (``{"imu": {"acc": a}}`` -> ``imu/acc``).
  Every distinct *layout* (the set of fields with their dtypes and shapes) gets its own group:
  the first one is the root, a message that differs goes to ``layout1``, ``layout2``, ...
  (``strict_layout=True`` raises instead). Attributes name the source, the validation profile,
  the dmapickle version, the layout (JSON) and, at the end, the stream's counters.
- a directory of plain pickles (``pickle=True``): one standalone ``NNNNNNNN.pkl`` per message
  with its buffers in-band, protocol 4 when the message had no out-of-band buffer and protocol 5
  otherwise, so ``pickle.load(open(p, "rb"))`` works on any Python with numpy.

Interruptions: the data of full chunks is written as soon as a chunk is full, and the datasets'
extents (HDF5: a flush with the metadata cache's evictions off, so nothing on disk changes between
flushes; Zarr: each array's ``zarr.json``, replaced atomically, after the chunks it covers) are
committed every ``flush_interval`` seconds and at the end. A process killed at any point
(SIGKILL included) leaves a file the stock library opens holding the messages up to the last
commit; Ctrl-C (SIGINT) commits everything read first. The root attribute ``complete`` is true
only after a clean end; ``messages`` is the committed count. Pickle files are written under a
temporary name and renamed, so a directory never holds half a pickle.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import contextlib
import pickle
import signal
import sys
import threading
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

__all__ = ["export", "ExportError", "FORMATS", "Progress"]


class ExportError(ValueError):
    """A message that HDF5/Zarr cannot hold as it is (an object, None, a ragged list, a layout
    change under ``strict_layout``); the message names the field. ``pickle=True`` takes anything."""

#: Output formats: the suffixes that choose each one when ``format`` is not given.
FORMATS = {"hdf5": (".h5", ".hdf5", ".hdf"), "zarr": (".zarr",), "pickle": ()}

#: Columns every layout group gets besides the message's own fields.
FRAME_COLUMNS = ("frame_seq", "message_index", "host_time")

_CHUNK_BYTES = 1 << 20
_SCALAR_ROWS = 16384
_MAX_ROWS = 65536


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("dmapickle")
    except Exception:  # noqa: BLE001 - a source tree without metadata
        return "unknown"


# -- messages as fields -------------------------------------------------------------------------


def _leaf(path: str, value: Any) -> Tuple[str, Any]:
    """("array", ndarray) or ("scalar", numpy 0-d array or str) for one field's value."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise ExportError(f"field {path!r}: an object array cannot be exported; use pickle=True")
        return "array", value
    if isinstance(value, str):
        return "scalar", value
    if isinstance(value, (bool, np.bool_)):
        return "scalar", np.asarray(value, dtype=np.bool_)
    if isinstance(value, int) and not isinstance(value, np.generic):
        if -(2**63) <= value < 2**63:
            return "scalar", np.asarray(value, dtype=np.int64)
        if 0 <= value < 2**64:
            return "scalar", np.asarray(value, dtype=np.uint64)
        raise ExportError(f"field {path!r}: {value} does not fit 64 bits; use pickle=True")
    if isinstance(value, (float, complex, np.generic)):
        return "scalar", np.asarray(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "array", np.frombuffer(value, dtype=np.uint8)
    if isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError:  # ragged
            arr = np.empty(0, dtype=object)
        if arr.dtype.hasobject or arr.dtype.kind in "USV":
            raise ExportError(
                f"field {path!r}: a {type(value).__name__} that is not a numeric array cannot be "
                "exported to HDF5/Zarr; use pickle=True"
            )
        return "array", arr
    raise ExportError(
        f"field {path!r}: {type(value).__name__} values cannot be exported to HDF5/Zarr (numbers, "
        "strings, bytes and arrays can); use pickle=True"
    )


def fields(obj: Any) -> Dict[str, Tuple[str, Any]]:
    """A message's value as ``{path: (kind, value)}``: a dict's items (nested dicts as
    ``a/b`` paths), a bare array as ``data``, anything else as ``value``."""
    out: Dict[str, Tuple[str, Any]] = {}

    def walk(prefix: str, d: Mapping) -> None:
        for k, v in d.items():
            name = str(k)
            if not name or "/" in name or name in (".", ".."):
                raise ExportError(f"field name {k!r} (in {prefix or 'the message'!r}) is not a valid dataset name")
            path = prefix + name
            if isinstance(v, dict):
                walk(path + "/", v)
            else:
                out[path] = _leaf(path, v)

    if isinstance(obj, dict):
        walk("", obj)
    elif isinstance(obj, np.ndarray):
        out["data"] = _leaf("data", obj)
    else:
        out["value"] = _leaf("value", obj)
    for name in FRAME_COLUMNS:
        if name in out:
            raise ExportError(f"the message has a field {name!r}, a name the export uses for its own column")
    return out


def _layout(f: Dict[str, Tuple[str, Any]]) -> Tuple:
    return tuple(
        (p, kind, "str" if isinstance(v, str) else v.dtype.str, () if isinstance(v, str) else v.shape)
        for p, (kind, v) in f.items()
    )


# -- columns: buffering rows into whole chunks --------------------------------------------------


class _Column:
    """One dataset: rows buffered until a chunk is full, then written; ``committed`` rows are
    the ones the file's metadata shows."""

    def __init__(self, name: str, dtype: Any, shape: Tuple[int, ...], rows: int) -> None:
        self.name = name
        self.is_str = dtype == "str"
        self.dtype = dtype if self.is_str else np.dtype(dtype)
        self.shape = tuple(shape)
        self.rows = rows  # rows per chunk
        self.written = 0  # rows in the storage (data), committed or not
        self.committed = 0
        self.fill = 0
        self.cap = rows
        self.buf: Any = [] if self.is_str else np.empty((rows,) + self.shape, self.dtype)
        self.ds: Any = None

    def add(self, value: Any, storage: "_Storage") -> None:
        if self.is_str:
            self.buf.append(value)
            self.fill += 1
        elif self.rows == 1 and self.fill == 0:
            # One message per chunk: written straight from the message's own memory.
            storage.write(self, self.written, np.ascontiguousarray(value)[np.newaxis])
            self.written += 1
            return
        else:
            self.buf[self.fill] = value
            self.fill += 1
        if self.fill >= self.cap:
            self.write_pending(storage)

    def write_pending(self, storage: "_Storage") -> None:
        if not self.fill:
            return
        block = self.buf if self.is_str else self.buf[: self.fill]
        storage.write(self, self.written, block)
        self.written += self.fill
        self.fill = 0
        if self.is_str:
            self.buf = []
        # After a partial chunk (a commit), fill up to the next chunk boundary only, so later
        # writes stay one whole chunk each.
        self.cap = self.rows - self.written % self.rows


class _RowGuard:
    """Holds back a Ctrl-C (SIGINT) that arrives while one message is being added to every
    column, and raises it once the row is whole: an interrupted export never commits columns of
    different lengths (``KeyboardInterrupt`` can otherwise land between two columns' appends).
    Active only in the main thread and only over Python's default SIGINT handler."""

    def __init__(self) -> None:
        self.in_row = False
        self.pending = False
        self.previous: Any = None

    def __enter__(self) -> "_RowGuard":
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handler(self, signum: int, frame: Any) -> None:
        if self.in_row:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def row(self) -> Iterable[None]:
        self.in_row = True
        try:
            yield
        finally:
            self.in_row = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


def _chunk_rows(shape: Tuple[int, ...], dtype: Any, chunk_bytes: int, scalar: bool) -> int:
    if scalar:
        return _SCALAR_ROWS
    row = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return max(1, min(_MAX_ROWS, chunk_bytes // max(row, 1)))


class _Table:
    """The datasets of one layout (one group)."""

    def __init__(self, storage: "_Storage", group: Any, index: int, layout: Tuple, host_time: bool, chunk_bytes: int):
        self.storage = storage
        self.group = group
        self.index = index
        self.layout = layout
        self.columns: List[_Column] = []
        self.by_name: Dict[str, _Column] = {}
        for path, kind, dtype, shape in layout:
            rows = _chunk_rows(shape, "u1" if dtype == "str" else dtype, chunk_bytes, kind == "scalar")
            self._add_column(path, dtype, shape, rows)
        self._add_column("message_index", "<i8", (), _SCALAR_ROWS)
        if host_time:
            self._add_column("host_time", "<f8", (), _SCALAR_ROWS)
        # Last, so that (in Zarr) its extent is committed after every other column's.
        self._add_column("frame_seq", "<u4", (), _SCALAR_ROWS)
        self.messages = 0
        storage.set_attrs(group, {"layout": json.dumps([[p, k, d, list(s)] for p, k, d, s in layout])})

    def _add_column(self, name: str, dtype: Any, shape: Tuple[int, ...], rows: int) -> None:
        col = _Column(name, dtype, shape, rows)
        col.ds = self.storage.create(self.group, col)
        self.columns.append(col)
        self.by_name[name] = col

    def add(self, values: Dict[str, Tuple[str, Any]], seq: int, index: int, host_time: Optional[float]) -> None:
        st = self.storage
        for path, (_, v) in values.items():
            self.by_name[path].add(v, st)
        self.by_name["message_index"].add(index, st)
        if host_time is not None:
            self.by_name["host_time"].add(host_time, st)
        self.by_name["frame_seq"].add(seq, st)
        self.messages += 1

    def commit(self) -> None:
        for col in self.columns:
            col.write_pending(self.storage)
        self.storage.extend(self.columns)
        self.storage.set_attrs(self.group, {"messages": self.messages})


# -- storage back ends --------------------------------------------------------------------------


class _Storage:
    """What HDF5 and Zarr need to provide."""

    def group(self, name: Optional[str]) -> Any: ...
    def create(self, group: Any, col: _Column) -> Any: ...
    def write(self, col: _Column, start: int, block: Any) -> None: ...
    def extend(self, cols: Iterable[_Column]) -> None: ...
    def set_attrs(self, group: Any, attrs: Mapping[str, Any]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def _missing(pkg: str, e: ImportError) -> ImportError:
    return ImportError(
        f"exporting to {pkg} needs the {pkg} package ({e}); install the export extra: "
        "pip install 'dmapickle[export]' (from a checkout: pip install './host[export]')"
    )


class _HDF5(_Storage):
    def __init__(self, path: str) -> None:
        try:
            import h5py
        except ImportError as e:
            raise _missing("h5py", e) from None
        self.h5py = h5py
        # The default (earliest) file format: its superblock has no "open for writing" flag, so a
        # file whose writer was killed opens like any other (a SWMR file would need h5clear).
        self.f = h5py.File(path, "w")
        # Keep dirty metadata in memory until the next flush: between two flushes nothing the
        # last flush wrote is touched, so a kill leaves the file as that flush made it (new chunk
        # data goes to new space past it).
        cfg = self.f.id.get_mdc_config()
        cfg.evictions_enabled = False
        cfg.incr_mode = cfg.flash_incr_mode = cfg.decr_mode = 0  # H5C_*__off
        self.f.id.set_mdc_config(cfg)

    def group(self, name: Optional[str]) -> Any:
        return self.f if name is None else self.f.create_group(name)

    def create(self, group: Any, col: _Column) -> Any:
        dtype = self.h5py.string_dtype() if col.is_str else col.dtype
        chunks = (col.rows,) + tuple(max(1, d) for d in col.shape)
        return group.create_dataset(
            col.name, shape=(0,) + col.shape, maxshape=(None,) + col.shape, chunks=chunks, dtype=dtype
        )

    def write(self, col: _Column, start: int, block: Any) -> None:
        n = len(block)
        col.ds.resize(start + n, axis=0)
        col.ds[start : start + n] = block

    def extend(self, cols: Iterable[_Column]) -> None:
        for c in cols:
            c.committed = c.written

    def set_attrs(self, group: Any, attrs: Mapping[str, Any]) -> None:
        group.attrs.update(attrs)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class _Zarr(_Storage):
    def __init__(self, path: str) -> None:
        try:
            import zarr
        except ImportError as e:
            raise _missing("zarr", e) from None
        if int(zarr.__version__.split(".")[0]) < 3:
            raise ImportError(f"exporting to Zarr v3 needs zarr-python 3, not {zarr.__version__}")
        self.zarr = zarr
        self.root = zarr.open_group(path, mode="w", zarr_format=3)

    def group(self, name: Optional[str]) -> Any:
        return self.root if name is None else self.root.create_group(name)

    def create(self, group: Any, col: _Column) -> Any:
        z = self.zarr
        if col.is_str:
            arr = group.create_array(col.name, shape=(0,), chunks=(col.rows,), dtype=str, compressors=None)
        else:
            chunks = (col.rows,) + tuple(max(1, d) for d in col.shape)
            arr = group.create_array(
                col.name, shape=(0,) + col.shape, chunks=chunks, dtype=col.dtype, compressors=None, fill_value=0
            )
        # Chunks are written through a view whose (never saved) extent is huge; the saved
        # zarr.json grows only in `extend`, after the chunks it covers are in the store.
        big = arr.metadata.update_shape((2**62,) + col.shape)
        col.view = z.Array(z.AsyncArray(metadata=big, store_path=arr.store_path, config=arr.async_array.config))
        return arr

    def write(self, col: _Column, start: int, block: Any) -> None:
        col.view[start : start + len(block)] = block if not col.is_str else np.asarray(block, dtype=str)

    def extend(self, cols: Iterable[_Column]) -> None:
        for c in cols:
            if c.written != c.committed:
                c.ds.resize((c.written,) + c.shape)
                c.committed = c.written

    def set_attrs(self, group: Any, attrs: Mapping[str, Any]) -> None:
        group.attrs.update(dict(attrs))

    def flush(self) -> None:
        pass  # every write above already reached the store

    def close(self) -> None:
        pass


# -- plain pickles ------------------------------------------------------------------------------


def plain_pickle(obj: Any, had_buffers: bool) -> bytes:
    """``obj`` as one standalone pickle: buffers in-band, protocol 4 when the message had no
    out-of-band buffer, else 5 (its in-band buffers keep read-only arrays read-only)."""
    return pickle.dumps(obj, protocol=5 if had_buffers else 4)


class _PickleDir:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, exist_ok=True)

    def write(self, index: int, data: bytes) -> None:
        final = os.path.join(self.path, f"{index:08d}.pkl")
        tmp = os.path.join(self.path, f".{index:08d}.pkl.partial")
        with io.open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, final)


# -- progress -----------------------------------------------------------------------------------


class Progress:
    """Progress on stderr: a bar with rate and ETA on a terminal (redrawn up to 10 times a
    second), a plain line every ``every`` seconds otherwise, nothing when ``quiet``. ``total`` is
    the input's size in bytes, or None for a live source (then counts and rate only)."""

    def __init__(self, label: str, total: Optional[int], *, quiet: bool = False, out: Any = None, every: float = 2.0):
        self.label = label
        self.total = total if total else None
        self.out = out if out is not None else sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.every = min(every, 0.1) if self.tty else every
        self.start = time.monotonic()
        self.last = self.start
        self.drawn = False

    def due(self) -> bool:
        """Whether an update now would be shown (cheap: check before computing ``done``)."""
        return not self.quiet and time.monotonic() - self.last >= self.every

    def update(self, done: int, messages: int) -> None:
        if not self.due():
            return
        now = self.last = time.monotonic()
        secs = max(now - self.start, 1e-9)
        rate = done / secs
        text = f"{messages} msgs, {_size(done)}"
        if self.total:
            frac = min(done / self.total, 1.0)
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            text = f"{frac * 100:5.1f}% {text} of {_size(self.total)}, {_size(rate)}/s, ETA {_duration(eta)}"
            if self.tty:
                width = 30
                full = int(frac * width)
                text = f"[{'#' * full}{'.' * (width - full)}] {text}"
        else:
            text = f"{text}, {_size(rate)}/s, {_duration(secs)}"
        if self.tty:
            self.out.write(f"\r\x1b[2K{self.label}: {text}")
            self.drawn = True
        else:
            self.out.write(f"{self.label}: {text}\n")
        self.out.flush()

    def finish(self) -> None:
        if self.drawn:
            self.out.write("\r\x1b[2K")
            self.out.flush()
            self.drawn = False


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _duration(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(s + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


# -- the export loop ----------------------------------------------------------------------------


def _is_live(source: str) -> bool:
    scheme = source.split("://", 1)[0] if "://" in source else ""
    return scheme in ("tcp", "unix", "serial", "rtt")


def _file_size(source: str) -> Optional[int]:
    path = source[len("file://") :] if source.startswith("file://") else source
    if source == "-" or ("://" in source and not source.startswith("file://")):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    import stat

    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _format_of(path: str, format: Optional[str], as_pickle: bool) -> str:
    if as_pickle:
        return "pickle"
    if format:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
        return format
    low = path.rstrip("/").lower()
    for name, suffixes in FORMATS.items():
        if low.endswith(suffixes):
            return name
    raise ValueError(f"cannot tell the format of {path!r}: name it .h5 or .zarr, or pass format= ('hdf5', 'zarr', 'pickle')")


def _check_output(path: str, fmt: str, overwrite: bool) -> None:
    if not os.path.lexists(path) or overwrite:
        return
    if fmt == "pickle" and os.path.isdir(path) and not os.listdir(path):
        return
    raise FileExistsError(f"{path} exists: pass overwrite=True (--force) to replace it")


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def export(
    source: Any,
    path: Union[str, "os.PathLike[str]"],
    *,
    format: Optional[str] = None,  # noqa: A002 - the natural name
    pickle: bool = False,  # noqa: A002
    overwrite: bool = False,
    count: Optional[int] = None,
    strict_layout: bool = False,
    host_time: Optional[bool] = None,
    chunk_bytes: int = _CHUNK_BYTES,
    flush_interval: float = 1.0,
    quiet: bool = True,
    progress: Optional[Progress] = None,
    **open_kw: Any,
) -> Dict[str, Any]:
    """Export every message of ``source`` to ``path`` (see the module docs for the layout).

    ``source``: a recording path, a source URI (as ``dmapickle.open``), or an open Stream.
    ``format``: ``"hdf5"``, ``"zarr"`` or ``"pickle"``; by default from the suffix (``.h5``,
    ``.hdf5``, ``.zarr``); ``pickle=True`` is ``format="pickle"`` (``path`` is a directory).
    ``overwrite``: replace an existing ``path`` (else ``FileExistsError``); the output is created
    only when the first message arrived. ``count``: stop after that many messages.
    ``strict_layout``: raise :class:`ExportError` at a message whose fields, dtypes or shapes differ
    from the first one's, instead of starting a group for its layout. ``host_time``: write the
    ``host_time`` column (default: for live sockets, serial ports and RTT; a recording does not
    know when it was received). ``chunk_bytes``: target chunk size of array datasets (one message
    per chunk when a message's array is larger). ``flush_interval``: seconds between commits.
    ``quiet=False`` shows progress on stderr (``progress``: your own :class:`Progress`).
    Other keywords (``regions``, ``allow``, ``profile``, ``trust_link``, ``reconnect``,
    ``max_frame``, ...) go to ``dmapickle.open``.

    Returns ``{"messages", "layouts", "bytes", "seconds", "interrupted", "stats"}``. Ctrl-C
    (``KeyboardInterrupt``) commits what was read, closes the output and is re-raised.
    """
    from . import Stream, open as dm_open

    path = os.fspath(path)
    fmt = _format_of(path, format, pickle)
    _check_output(path, fmt, overwrite)
    if isinstance(source, Stream):
        stream, owned, name = source, False, source.source
    else:
        name = os.fspath(source)
        open_kw.setdefault("reconnect", _is_live(name))
        stream, owned = dm_open(name, **open_kw), True
    live = _is_live(name)
    if host_time is None:
        host_time = live
    if progress is None:
        progress = Progress("export", _file_size(name), quiet=quiet)
    profile = open_kw.get("profile", "general")
    attrs = {
        "dmapickle_source": name,
        "dmapickle_profile": profile,
        "dmapickle_version": _version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "complete": False,
    }
    storage: Any = None
    root: Any = None
    tables: Dict[Tuple, _Table] = {}
    messages = payload = 0
    interrupted = clean = False
    start = time.monotonic()
    next_commit = start + flush_interval

    def commit() -> None:
        for t in tables.values():
            t.commit()
        if storage is not None and not isinstance(storage, _PickleDir):
            storage.set_attrs(root, {"messages": messages, "layouts": len(tables)})
            storage.flush()

    try:
        with _RowGuard() as guard:
            while count is None or messages < count:
                try:
                    msg = stream.next(timeout=max(0.0, next_commit - time.monotonic()))
                except TimeoutError:
                    msg = False
                if msg is None:
                    break
                if msg is not False:
                    now = _wall_time(msg) if host_time else None
                    obj = msg.load()
                    with guard.row():  # every column gets this message, or none
                        if storage is None:
                            if overwrite:
                                _remove(path)
                            if fmt == "pickle":
                                storage = _PickleDir(path)
                            else:
                                storage = _HDF5(path) if fmt == "hdf5" else _Zarr(path)
                                root = storage.group(None)
                                storage.set_attrs(root, attrs)
                        if fmt == "pickle":
                            storage.write(messages, plain_pickle(obj, bool(msg.buffers)))
                        else:
                            values = fields(obj)
                            key = _layout(values)
                            table = tables.get(key)
                            if table is None:
                                if tables and strict_layout:
                                    first = next(iter(tables))
                                    raise ExportError(
                                        f"message {messages} (seq {msg.seq}) has the layout {key}, not the first "
                                        f"message's {first} (strict_layout)"
                                    )
                                group = root if not tables else storage.group(_free_name(root, f"layout{len(tables)}"))
                                table = tables[key] = _Table(storage, group, len(tables), key, host_time, chunk_bytes)
                            table.add(values, msg.seq, messages, now)
                        messages += 1
                        payload += len(msg.pickle) + sum(b.nbytes for b in msg.buffers)
                    del msg, obj
                    if progress.due():
                        progress.update(stream.stats["bytes_read"], messages)
                if time.monotonic() >= next_commit:
                    commit()
                    next_commit = time.monotonic() + flush_interval
        clean = True
    except KeyboardInterrupt:
        interrupted = True
    finally:
        stats = stream.stats
        if owned:
            stream.close()
        if storage is not None and not isinstance(storage, _PickleDir):
            try:
                commit()
                storage.set_attrs(
                    root,
                    {
                        "complete": clean,
                        "stream_stats": json.dumps({k: v for k, v in stats.items() if k != "events"}),
                    },
                )
            finally:
                storage.close()
        progress.finish()
    result = {
        "messages": messages,
        "layouts": len(tables) if fmt != "pickle" else None,
        "bytes": payload,
        "seconds": time.monotonic() - start,
        "interrupted": interrupted,
        "stats": stats,
        "path": path,
        "format": fmt,
    }
    if interrupted:
        raise KeyboardInterrupt(result)
    return result


#: Unix time minus the monotonic clock, taken once: host times from ``host_ns`` stay monotonic.
_WALL_MINUS_MONOTONIC = time.time() - time.monotonic_ns() / 1e9


def _wall_time(msg: Any) -> float:
    """Unix time the message was read: from its ``host_ns`` (monotonic, taken in Rust as the
    read returned) where the package has it, else now."""
    host_ns = getattr(msg, "host_ns", None)
    if host_ns is None:
        return time.time()
    return _WALL_MINUS_MONOTONIC + host_ns / 1e9


def _free_name(group: Any, name: str) -> str:
    base, n = name, 0
    while name in group:
        n += 1
        name = f"{base}_{n}"
    return name

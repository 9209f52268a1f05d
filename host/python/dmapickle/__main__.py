"""``python -m dmapickle export SOURCE OUT``: the command line of :func:`dmapickle.export`
(``dmapickle export`` in the Rust CLI runs this). Exit codes: 0 done or Ctrl-C, 1 a message that
cannot be exported (or a layout change with --strict-layout), 2 usage or I/O error."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import List, Optional

PROG = "dmapickle export"


def _size(s: str) -> int:
    t = s.strip().rstrip("Bb").rstrip("i")
    shift = {"K": 10, "M": 20, "G": 30}.get(t[-1:].upper(), 0)
    try:
        return int(t[:-1] if shift else t) << shift
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a size (e.g. 65536, 64K, 1M)") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Export a recording or live source to HDF5 (OUT.h5), Zarr v3 (OUT.zarr) or a "
        "directory of plain pickles (--pickle): one dataset per array field, appended per message.",
    )
    p.add_argument("source", metavar="SOURCE", help="a recording, file://PATH, -, tcp://HOST:PORT, unix:///PATH, serial:///DEV?baud=N")
    p.add_argument("out", metavar="OUT", help="OUT.h5, OUT.zarr, or a directory with --pickle")
    p.add_argument("--pickle", action="store_true", help="one standalone .pkl per message, buffers in-band")
    p.add_argument("--format", choices=["hdf5", "zarr", "pickle"], help="instead of OUT's suffix")
    p.add_argument("--force", action="store_true", help="replace an existing OUT (once the first message arrived)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    p.add_argument("--strict-layout", action="store_true", help="fail at a message whose fields, dtypes or shapes differ from the first's (default: a group per layout)")
    host = p.add_mutually_exclusive_group()
    host.add_argument("--host-time", dest="host_time", action="store_true", default=None, help="write the host_time column (default for live sources)")
    host.add_argument("--no-host-time", dest="host_time", action="store_false")
    p.add_argument("--chunk-bytes", type=_size, default="1M", metavar="BYTES", help="target chunk size of array datasets (default 1M)")
    p.add_argument("--flush-interval", type=float, default=1.0, metavar="S", help="seconds between commits (default 1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress")
    link = p.add_argument_group("source options (as dmapickle listen)")
    link.add_argument("--region", action="append", default=[], metavar="ID=PATH")
    link.add_argument("--trust-link", action="store_true")
    link.add_argument("--max-frame", type=int, metavar="BYTES")
    link.add_argument("--max-pickle", type=int, metavar="BYTES")
    link.add_argument("--max-buffers", type=int, metavar="N")
    link.add_argument("--profile", choices=["general", "strict"], default="general")
    link.add_argument("--allow", action="append", default=[], metavar="MODULE:NAME")
    link.add_argument("--no-reconnect", action="store_true")
    return p


def _export(argv: List[str]) -> int:
    args = _parser().parse_args(argv)
    from . import RejectedError
    from ._export import ExportError, export

    # SIGINT (even when a shell started us in the background with it ignored) and SIGTERM end
    # like Ctrl-C: what was read is committed.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    kw = dict(
        regions=args.region or None,
        allow=args.allow or None,
        profile=args.profile,
        trust_link=args.trust_link,
        max_frame=args.max_frame,
        max_pickle=args.max_pickle,
        max_buffers=args.max_buffers,
    )
    if args.no_reconnect:
        kw["reconnect"] = False
    try:
        r = export(
            args.source,
            args.out,
            format=args.format,
            pickle=args.pickle,
            overwrite=args.force,
            count=args.count,
            strict_layout=args.strict_layout,
            host_time=args.host_time,
            chunk_bytes=args.chunk_bytes,
            flush_interval=args.flush_interval,
            quiet=args.quiet,
            **kw,
        )
        reason = "source ended" if args.count is None or r["messages"] < args.count else f"{args.count} messages"
    except KeyboardInterrupt as e:
        r = e.args[0] if e.args and isinstance(e.args[0], dict) else None
        if r is None:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 0
        reason = "interrupted"
    except (ExportError, RejectedError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except (ImportError, OSError, ValueError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    s = r["stats"]
    if r["messages"] == 0 and s.get("frames_ok", 0) + s.get("corrupt", 0) + s.get("refused", 0) == 0:
        print(f"{PROG}: {args.source}: no dmapickle frames found ({s.get('bytes_read', 0)} B read); {args.out} not written", file=sys.stderr)
        return 2
    what = f"{r['layouts']} layout{'s' if r['layouts'] != 1 else ''}, " if r["layouts"] is not None else ""
    print(
        f"exported {r['messages']} messages ({what}{r['bytes']} B) to {args.out} ({reason}) in "
        f"{r['seconds']:.2f} s; corrupt {s['corrupt']}, lost {s['lost']}, refused {s['refused']}"
    )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m dmapickle export SOURCE OUT [options]   (export --help for the options)")
        return 0 if argv else 2
    if argv[0] != "export":
        print(f"python -m dmapickle: unknown command {argv[0]!r}; the command is: export", file=sys.stderr)
        return 2
    return _export(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

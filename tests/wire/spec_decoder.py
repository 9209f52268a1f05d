#!/usr/bin/env python3
"""A second reader of dmapickle link streams, written from docs/wire-format.md alone.

It follows "Reading a stream" step by step (standard library only, no speed tricks), so that
host/tests/spec_decoder.rs can check that the Rust FrameReader and the document agree on every
message, refusal and counter. It does not validate pickles (that is another document).

    spec_decoder.py [--trust-link] [--max-frame N] [--max-pickle N] [--max-buffers N]
                    [--region ID=PATH]... STREAM

prints one line per event and the counters:

    message OFFSET seq=S restart=0|1 pickle=LEN:CRC buffers=KIND:REGION:OFFSET:LEN:ro|rw:CRC,...
    refused OFFSET KIND
    counters frames_ok=.. corrupt=.. refused=.. lost=.. restarts=.. seq_jumps=.. bytes_skipped=.. bytes_read=..

where CRC is zlib's CRC-32 of the bytes, as 8 hex digits (a short stand-in for the bytes).
"""

import argparse
import struct
import sys
import zlib

SYNC = b"\xf1\x50\x4b\x05"
SEQ_RESTART, NO_DATA_CRC = 0x01, 0x02
READONLY, SHARED = 0x01, 0x02


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = _table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def u32(b, at):
    return struct.unpack_from("<I", b, at)[0]


def header_ok(b, at):
    """Check 2: the header CRC (the caller knows 24 bytes are there)."""
    return crc32c(b[at:at + 20]) == u32(b, at + 20)


def reboot_inside(data, h, end):
    """"A reboot cuts the frame": a valid version-1 SEQ_RESTART header within h+1 .. end."""
    p = data.find(SYNC, h + 1, end)
    while p >= 0 and p + 24 <= end:
        if data[p + 4] == 1 and data[p + 5] & SEQ_RESTART and header_ok(data, p):
            return True
        p = data.find(SYNC, p + 1, end)
    return False


def control_len(k):
    return (16 + 8 * k + 63) // 64 * 64


class Region:
    """A mapped shared region (check 13), read once from its file."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.bytes = f.read()

    def view(self, offset, length):
        b = self.bytes
        if b[:4] != b"DPRL" or b[4:6] != b"\x01\x00":
            return None
        k = struct.unpack_from("<H", b, 6)[0]
        if k == 0 or k > 1024 or k & (k - 1) or len(b) < control_len(k):
            return None
        if offset < control_len(k) or offset + length > len(b):
            return None
        return b[offset:offset + length]


def decode(data, trust_link=False, max_frame=256 << 20, max_pickle=1 << 20, max_buffers=4096,
           regions=None):
    regions = regions or {}
    out = []
    n = dict(frames_ok=0, corrupt=0, refused=0, lost=0, restarts=0, seq_jumps=0,
             bytes_skipped=0, bytes_read=len(data))
    last = None
    pos = 0

    def refuse(at, kind):
        n["refused"] += 1
        out.append(f"refused {at} {kind}")

    while True:
        h = data.find(SYNC, pos)
        if h < 0:
            n["bytes_skipped"] += len(data) - pos
            break
        n["bytes_skipped"] += h - pos
        if h + 24 > len(data):                          # check 1
            n["bytes_skipped"] += len(data) - h
            break
        pos = h + 1                                     # unless the frame is consumed
        if not header_ok(data, h):                      # check 2
            n["bytes_skipped"] += 1
            continue
        version, flags, nbuf, seq, plen, ilen = struct.unpack_from("<BBHIII", data, h + 4)
        length = 32 + plen + 12 * nbuf + ilen
        refusal = ("UnsupportedVersion" if version != 1                       # check 3
                   else "UnknownFrameFlags" if flags & ~(SEQ_RESTART | NO_DATA_CRC)  # check 4
                   else "TooLarge" if length > max_frame or plen > max_pickle   # check 5
                   or nbuf > max_buffers else None)
        if refusal:
            refuse(h, refusal)
            n["bytes_skipped"] += 1
            continue
        end = h + length
        body = data[h + 24:h + 24 + plen + 12 * nbuf]
        inline = data[end - 4 - ilen:end - 4]
        if (end > len(data) or reboot_inside(data, h, end)          # checks 6 and 8
                or crc32c(body) != u32(data, h + 24 + len(body))     # check 7
                or u32(data, end - 4) != (0 if flags & NO_DATA_CRC else crc32c(inline))):  # 9
            n["corrupt"] += 1
            n["bytes_skipped"] += 1
            continue
        pos = end                                       # consumed: sequence accounting
        if flags & SEQ_RESTART:
            n["restarts"] += 1
        elif last is not None:
            k = (seq - last) % 2**32
            if k == 0 or k >= 2**31:
                n["seq_jumps"] += 1
            else:
                n["lost"] += k - 1
        last = seq
        entries = [struct.unpack_from("<HBBII", body, plen + 12 * i) for i in range(nbuf)]
        if any(ef & ~(READONLY | SHARED) or res for _, ef, res, _, _ in entries):   # check 10
            refuse(h, "UnknownEntryFlags")
            continue
        if sum(ln for _, ef, _, _, ln in entries if not ef & SHARED) != ilen:     # check 11
            refuse(h, "InlineLength")
            continue
        if flags & NO_DATA_CRC and not trust_link:      # check 12
            refuse(h, "UncheckedData")
            continue
        bufs, at = [], 0
        for region, ef, _, off, ln in entries:          # check 13
            if ef & SHARED:
                r = regions.get(region)
                b = r.view(off, ln) if r else None
                if b is None:
                    break
            else:
                b, at = inline[at:at + ln], at + ln
            bufs.append("%s:%d:%d:%d:%s:%08x" % ("shared" if ef & SHARED else "inline", region,
                        off, ln, "ro" if ef & READONLY else "rw", zlib.crc32(b)))
        if len(bufs) < nbuf:
            refuse(h, "Region")
            continue
        n["frames_ok"] += 1                             # check 15 (no validator here)
        pickle = body[:plen]
        out.append(f"message {h} seq={seq} restart={flags & SEQ_RESTART} "
                   f"pickle={plen}:{zlib.crc32(pickle):08x} buffers={','.join(bufs)}")
    out.append("counters " + " ".join(f"{k}={v}" for k, v in n.items()))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stream")
    ap.add_argument("--trust-link", action="store_true")
    ap.add_argument("--max-frame", type=int, default=256 << 20)
    ap.add_argument("--max-pickle", type=int, default=1 << 20)
    ap.add_argument("--max-buffers", type=int, default=4096)
    ap.add_argument("--region", action="append", default=[], metavar="ID=PATH")
    a = ap.parse_args(argv)
    regions = {int(r.split("=", 1)[0]): Region(r.split("=", 1)[1]) for r in a.region}
    with open(a.stream, "rb") as f:
        data = f.read()
    lines = decode(data, a.trust_link, a.max_frame, a.max_pickle, a.max_buffers, regions)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

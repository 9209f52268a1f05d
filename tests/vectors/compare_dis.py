#!/usr/bin/env python3
"""Check that `dmapickle inspect FILE` agrees with `pickletools` opcode by opcode.

For every pickle, compares the (offset, opcode name, argument) triples of
`pickletools.genops` with the disassembly lines `dmapickle inspect` prints
(`OFFSET: [indent]NAME [ARG] [(as N)|(MARK at N)]`). Arguments are compared as
values: ints and floats numerically, str/bytes via `ast.literal_eval`, so only
formatting may differ. Opcodes whose pickletools argument is None are compared
by offset and name only (their trailing notes are informational).

usage: compare_dis.py --bin PATH/TO/dmapickle FILE_OR_DIR...
Prints one line per disagreeing file and `compare_dis: N agree, N differ`;
exits 1 if any file differs or cannot be disassembled by either side.
"""
import argparse
import ast
import math
import os
import pickletools
import re
import subprocess
import sys

LINE = re.compile(r"^\s*(\d+): \s*([A-Z_0-9]+)(?: (.*))?$")


def expected_ops(data):
    ops = []
    for opcode, arg, pos in pickletools.genops(data):
        ops.append((pos, opcode.name, arg))
        if opcode.name == "STOP":
            break
    return ops


def parse_arg(name, text, want):
    """Our argument text, decoded to the type pickletools gives for `want`."""
    if want is None:
        return None
    text = (text or "").strip()
    if isinstance(want, bool):
        return {"True": True, "False": False}.get(text, text)
    if isinstance(want, int):
        return int(text)
    if isinstance(want, float):
        return float(text)
    if isinstance(want, bytearray):
        if not (text.startswith("bytearray(") and text.endswith(")")):
            raise ValueError("not a bytearray literal: " + text[:40])
        return bytearray(ast.literal_eval(text[len("bytearray("):-1]))
    return ast.literal_eval(text)


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def compare(binary, path):
    with open(path, "rb") as f:
        data = f.read()
    want = expected_ops(data)
    out = subprocess.run([binary, "inspect", path], capture_output=True, timeout=30)
    if out.returncode not in (0, 1):
        return "dmapickle inspect exited %d: %s" % (out.returncode, out.stderr.decode()[:200])
    got = []
    for line in out.stdout.decode("utf-8").splitlines():
        m = LINE.match(line)
        if m:
            got.append((int(m.group(1)), m.group(2), m.group(3)))
    if len(got) != len(want):
        return "%d opcodes from dmapickle, %d from pickletools" % (len(got), len(want))
    for (gpos, gname, gtext), (wpos, wname, warg) in zip(got, want):
        if (gpos, gname) != (wpos, wname):
            return "at %d: dmapickle %s@%d, pickletools %s@%d" % (wpos, gname, gpos, wname, wpos)
        try:
            garg = parse_arg(gname, gtext, warg)
        except (ValueError, SyntaxError) as e:
            return "at %d %s: cannot parse argument %r: %s" % (wpos, wname, gtext, e)
        if not same(garg, warg):
            return "at %d %s: dmapickle %r, pickletools %r" % (wpos, wname, garg, warg)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="path to the dmapickle binary")
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()
    files = []
    for p in args.paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, n) for n in os.listdir(p) if n.endswith(".pkl"))
        else:
            files.append(p)
    agree = differ = 0
    for path in files:
        problem = compare(args.bin, path)
        if problem:
            differ += 1
            print("%s: differs: %s" % (path, problem))
        else:
            agree += 1
    print("compare_dis: %d agree, %d differ" % (agree, differ))
    return 1 if differ or not files else 0


if __name__ == "__main__":
    sys.exit(main())

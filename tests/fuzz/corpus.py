"""Seeds and mutations for the differential fuzzer (`differential.py`): CPython/numpy pickles,
encoder-like messages, constructed and hostile inputs, and the mutations made at opcode
boundaries found with pickletools.genops; also the allowlist the mutants aim at, which the
fuzzer's oracle checks every `find_class` against."""

import array
import math
import os
import pickle
import pickletools
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MOD = 2**61 - 1  # CPython's hash modulus for ints

ALLOWED_GLOBALS = {
    ("builtins", "complex"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "bytes"), ("builtins", "bytearray"),
    ("__builtin__", "complex"), ("__builtin__", "set"), ("__builtin__", "frozenset"),
    ("__builtin__", "bytes"), ("__builtin__", "bytearray"),
    ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}

# Module names that CPython's find_class maps to Python 3 ones (_compat_pickle) only below
# protocol 3; at protocol 3+ it imports them as named, so an accepted pickle must not name them.
PYTHON2_MODULES = {"__builtin__", "copy_reg"}


# =============================================================================================
# Seeds: CPython/numpy pickles, encoder-like messages, constructed and hostile inputs.
# =============================================================================================

class Seed:
    __slots__ = ("name", "data", "bufs", "_offs")

    def __init__(self, name, data, bufs):
        self.name, self.data, self.bufs, self._offs = name, unframe(data), list(bufs), None

    @property
    def offs(self):
        """Start offsets of the opcodes (the last entry: the end of STOP)."""
        if self._offs is None:
            self._offs = array.array("q", opcode_offsets(self.data))
        return self._offs


def _arg_lengths():
    """opcode byte -> its argument's length: n >= 0 fixed, else how the length is read
    (pickletools' ArgumentDescriptor.n: -1 up to a newline, -2/-3/-4/-5 a 1/4/4U/8U-byte
    length prefix; GLOBAL and INST take two newline-terminated lines: -6)."""
    out = {}
    for op in pickletools.opcodes:
        n = 0 if op.arg is None else op.arg.n
        if op.name in ("GLOBAL", "INST"):
            n = -6
        out[op.code.encode("latin-1")[0]] = n
    return out


ARG_LEN = _arg_lengths()


def opcode_offsets(data):
    """Start offsets of the opcodes up to STOP, then the end of STOP (or len(data) where the
    stream is truncated or an unknown opcode stops it). Same boundaries as pickletools.genops,
    without decoding arguments (genops costs ~30x more)."""
    offs = []
    i, n = 0, len(data)
    get, frm = ARG_LEN.get, int.from_bytes
    while i < n:
        c = data[i]
        k = get(c)
        if k is None:
            break
        offs.append(i)
        if c == 0x2E:  # STOP
            offs.append(i + 1)
            return offs
        i += 1
        if k >= 0:
            i += k
        elif k == -1:
            j = data.find(b"\n", i)
            if j < 0:
                break
            i = j + 1
        elif k == -6:
            j = data.find(b"\n", i)
            j = data.find(b"\n", j + 1) if j >= 0 else -1
            if j < 0:
                break
            i = j + 1
        elif k == -2:
            if i >= n:
                break
            i += 1 + data[i]
        else:
            w = 4 if k in (-3, -4) else 8
            length = frm(data[i:i + w], "little", signed=(k == -3))
            if length < 0:
                break
            i += w + length
    offs.append(n)
    return offs


def unframe(data):
    """The same pickle without FRAME opcodes (frames are optional); mutations keep it parsable
    and `reframe` can put one frame back."""
    if b"\x95" not in data[:16] and b"\x95" not in data:
        return data
    out, last = [], 0
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name == "FRAME":
                out.append(data[last:pos])
                last = pos + 9
            if op.name == "STOP":
                break
    except Exception:
        return data
    out.append(data[last:])
    return b"".join(out)


def reframe(data):
    if len(data) < 3 or data[0] != 0x80 or data[1] < 4:
        return data
    body = data[2:]
    return data[:2] + b"\x95" + struct.pack("<Q", len(body)) + body


def seeds_from_vectors(rng):
    sys.path.insert(0, os.path.join(ROOT, "tests", "vectors"))
    import make_cpython_vectors as mcv
    out = []
    groups = [("plain", mcv.plain_values()), ("near", mcv.near_miss_values()),
              ("np", {**mcv.arrays(), **mcv.scalars(), **mcv.messages()})]
    wb = pickle.PickleBuffer(bytearray(b"0123456789abcdef"))
    rb = pickle.PickleBuffer(b"read-only buffer!")
    groups.append(("pb", {"pb_two": [wb, rb], "pb_in_dict": {"raw": rb, "n": 1}}))
    for group, values in groups:
        for key, value in values.items():
            for protocol in ((5,) if group == "pb" else (2, 3, 4, 5)):
                data = pickle.dumps(value, protocol=protocol)
                out.append(Seed("%s_p%d_%s" % (group, protocol, key), data, []))
                if protocol == 5 and group in ("np", "pb"):
                    bufs = []
                    data = pickle.dumps(value, protocol=5, buffer_callback=bufs.append)
                    out.append(Seed("%s_p5_%s_oob" % (group, key), data, [bytes(b.raw()) for b in bufs]))
    return out


def seeds_from_hostile():
    import make_hostile as mh
    out = []
    for name, note, reason, data, buffers in mh.CASES:
        out.append(Seed("hostile_" + name, data, [fill(n) for n in buffers]))
    return out


def fill(n):
    return bytes(range(256)) * (n // 256) + bytes(range(n % 256))


# opcode builders: the hostile generator's (P, su, sg, I, F, BG, BP, tup, memo_nest, opcodes)
sys.path.insert(0, os.path.join(ROOT, "tests", "vectors", "hostile"))
from make_hostile import (P, su, sg, I, F, BG, BP, bu, tup, memo_nest, MARK, STOP, NONE, TRUE,  # noqa: E402
                          FALSE, POP, T1, T2, T3, TUPLE, REDUCE, NEWOBJ, BUILD, EMPTY_LIST, EMPTY_DICT,
                          EMPTY_SET, EMPTY_TUPLE, APPEND, APPENDS, SETITEM, SETITEMS, ADDITEMS,
                          FROZENSET, NB, RO, MEMO)


def batched(head, items, close, n=1000):
    return head + b"".join(MARK + b"".join(items[i:i + n]) + close for i in range(0, len(items), n))


def encoder_message(shape, dtype, seq):
    """What dmapickle's encoder writes for a sensor message (protocol 5, globals memoized,
    arrays as numpy.ndarray NEWOBJ over NEXT_BUFFER, no frames, no other memo)."""
    nbytes = int(math.prod(shape)) * int(dtype[-1] if dtype[-1].isdigit() else 1)
    shape_t = {1: T1, 2: T2, 3: T3}.get(len(shape))
    sh = b"".join(I(d) for d in shape) + shape_t if shape_t else tup(*[I(d) for d in shape])
    arr = sg("numpy", "ndarray") + MEMO + MARK + sh + su(dtype) + NB + I(0) + NONE + su("C") + TUPLE + NEWOBJ
    data = (P(5) + EMPTY_DICT + MARK + su("seq") + I(seq) + su("t_ns") + I(1700000000123456789)
            + su("adc") + arr + su("gain") + F(0.5) + su("c") + sg("builtins", "complex") + MEMO
            + F(1.0) + F(-2.0) + T2 + REDUCE + SETITEMS + STOP)
    return data, [fill(nbytes)]


def record_message(arrays, values=True):
    """A flat record as the encoder writes it (the strict profile's fast path proves these):
    str keys, values of every scalar spelling, buffers and arrays ((shape, dtype, order,
    read-only) each; the second and later take numpy.ndarray from the memo)."""
    items, bufs = [], []
    if values:
        items += [su("none") + NONE, su("yes") + TRUE, su("no") + FALSE, su("seq") + I(41),
                  su("u16") + I(40000), su("neg") + I(-7), su("t_ns") + I(1700000000123456789),
                  su("gain") + F(0.5), su("unit") + su("mV"), su("raw") + NB + RO]
        bufs.append(fill(5))
    for k, (shape, dtype, order, ro) in enumerate(arrays):
        nbytes = int(math.prod(shape)) * int(dtype[-1] if dtype[-1].isdigit() else 1)
        shape_t = {0: EMPTY_TUPLE, 1: T1, 2: T2, 3: T3}.get(len(shape))
        sh = (b"".join(I(d) for d in shape) + shape_t) if shape_t else tup(*[I(d) for d in shape])
        cls = BG(0) if k else sg("numpy", "ndarray") + MEMO
        items.append(su("a%d" % k) + cls + MARK + sh + su(dtype) + NB + (RO if ro else b"") + I(0) + NONE
                     + su(order) + TUPLE + NEWOBJ)
        bufs.append(fill(nbytes))
    return P(5) + EMPTY_DICT + MARK + b"".join(items) + SETITEMS + STOP, bufs


def constructed_seeds():
    """Inputs that sit on either side of the issue-10 bounds."""
    out = []
    add = lambda name, data, bufs=(): out.append(Seed("built_" + name, data, list(bufs)))
    for shape, dt in (((1024, 4), "<i2"), ((16,), "<f4"), ((2, 3, 4), ">c16"), ((0,), "<u8"),
                      ((1,) * 8, "|u1"), ((3, 5), "|b1")):
        add("encoder_%s_%s" % ("x".join(map(str, shape)), dt.replace("<", "le").replace(">", "be").replace("|", "")),
            *encoder_message(shape, dt, 41))
    add("record_sensor", *record_message([((1024, 4), "<i2", "C", True)]))
    add("record_values", *record_message([], True))
    add("record_empty", P(5) + EMPTY_DICT + STOP)
    add("record_one", P(5) + EMPTY_DICT + su("seq") + I(7) + SETITEM + STOP)
    add("record_arrays", *record_message([((), "<f8", "C", False), ((3,), "|u1", "C", True),
                                          ((2, 3, 4, 5), ">i4", "F", False), ((0, 7), "<c8", "C", False),
                                          ((4, 4), "|b1", "C", True)], False))
    for d in (50, 98, 99, 100, 101, 102, 150, 1000, 5000):
        add("tuple1_chain_%d" % d, P(4) + NONE + T1 * d + STOP)
        add("tuple1_key_%d" % d, P(4) + EMPTY_DICT + NONE + T1 * d + NONE + SETITEM + STOP)
        add("tuple2_chain_%d" % d, P(4) + NONE + (NONE + T2) * d + STOP)
        add("list_memo_nest_%d" % d, P(4) + memo_nest(EMPTY_LIST, EMPTY_LIST + BG(0) + APPEND, d) + STOP)
        add("dict_memo_nest_%d" % d, P(4) + memo_nest(EMPTY_DICT, EMPTY_DICT + su("k") + BG(0) + SETITEM, d) + STOP)
        add("frozenset_memo_nest_%d" % d,
            P(4) + EMPTY_SET + MARK + memo_nest(NONE + T1, MARK + BG(0) + FROZENSET, d) + ADDITEMS + STOP)
    add("tuple1_chain_300k_key", P(4) + EMPTY_DICT + NONE + T1 * 300_000 + NONE + SETITEM + STOP)
    for d in (16, 24, 32, 40):  # shared tuples: hash visits 2**d
        add("tuple_dag_key_%d" % d,
            P(4) + EMPTY_DICT + memo_nest(NONE + T1, BG(0) + BG(0) + T2, d) + NONE + SETITEM + STOP)
        add("list_dag_%d" % d, P(4) + memo_nest(EMPTY_LIST, EMPTY_LIST + BG(0) + APPEND + BG(0) + APPEND, d) + STOP)
    for n in (31, 32, 33, 34, 40, 2000):  # keys sharing one hash
        ints = [I(i * MOD) for i in range(n)]
        add("int_collide_dict_%d" % n, P(4) + batched(EMPTY_DICT, [k + NONE for k in ints], SETITEMS) + STOP)
        add("int_collide_set_%d" % n, P(4) + batched(EMPTY_SET, ints, ADDITEMS) + STOP)
        add("int_collide_frozenset_%d" % n, P(4) + MARK + b"".join(ints) + FROZENSET + STOP)
        add("int_collide_set_of_list_%d" % n,
            P(4) + sg("builtins", "set") + batched(EMPTY_LIST, ints, APPENDS) + T1 + REDUCE + STOP)
        cx = [BG(0) + F(-1000003.0 * k) + F(float(k)) + T2 + REDUCE for k in range(1, n + 1)]
        add("complex_collide_set_%d" % n,
            P(4) + sg("builtins", "complex") + BP(0) + POP + batched(EMPTY_SET, cx, ADDITEMS) + STOP)
        # ints that share a hash modulo the table size only (dict probing copes): must pass
        spread = [I(i << 20) for i in range(n)]
        add("int_shift_dict_%d" % n, P(4) + batched(EMPTY_DICT, [k + NONE for k in spread], SETITEMS) + STOP)
    floats = [math.ldexp(1.0, 61 * k) for k in range(-17, 17)]
    add("float_collide_dict_34", P(4) + batched(EMPTY_DICT, [F(x) + NONE for x in floats], SETITEMS) + STOP)
    add("float_collide_dict_30", P(4) + batched(EMPTY_DICT, [F(x) + NONE for x in floats[:30]], SETITEMS) + STOP)
    add("mixed_collide_dict", P(4) + batched(EMPTY_DICT, [F(x) + NONE for x in floats[:20]]
                                              + [I(1 + i * MOD) + NONE for i in range(20)], SETITEMS) + STOP)
    # allocation near the default 256 MiB budget (and past it)
    for n in (1_000_000, 1_300_000):
        add("empty_set_bomb_%d" % n, P(4) + batched(EMPTY_LIST, [EMPTY_SET] * n, APPENDS) + STOP)
    add("empty_dict_bomb_4.4M", P(4) + batched(EMPTY_LIST, [EMPTY_DICT] * 4_400_000, APPENDS) + STOP)
    add("empty_list_bomb_4.4M", P(4) + batched(EMPTY_LIST, [EMPTY_LIST] * 4_400_000, APPENDS) + STOP)
    blob = fill(256 << 10)
    for n in (900, 1100):
        add("bytearray_copies_%d" % n,
            P(4) + EMPTY_LIST + BP(0) + sg("builtins", "bytearray") + BP(1) + b"B" + struct.pack("<I", len(blob))
            + blob + BP(2) + POP + POP + batched(b"", [BG(1) + BG(2) + T1 + REDUCE] * n, APPENDS) + STOP)
    add("set_copies_6000",
        P(4) + EMPTY_LIST + BP(0) + sg("builtins", "set") + BP(1) + batched(EMPTY_LIST, [I(i) for i in range(1000)], APPENDS)
        + BP(2) + POP + POP + batched(b"", [BG(1) + BG(2) + T1 + REDUCE] * 6000, APPENDS) + STOP)
    # arrays near the 1 GiB logical limit: stride 0 over 8 bytes
    for n in (2**27, 2**27 + 1, 2**40):
        add("stride0_%d" % n, P(5) + sg("numpy", "ndarray") + tup(tup(I(n)), su("<i8"), NB, I(0), tup(I(0)), su("C"))
            + NEWOBJ + STOP, [fill(8)])
    add("zero_size_far_offset", P(5) + sg("numpy", "ndarray") + tup(tup(I(0)), su("<i4"), NB, I(2**60), tup(I(4)), su("C"))
        + NEWOBJ + STOP, [fill(16)])
    add("complex_huge_int", P(4) + sg("builtins", "complex") + tup(I(10**400)) + REDUCE + STOP)
    add("codecs_euro", P(4) + sg("_codecs", "encode") + su("\u20ac") + su("latin1") + T2 + REDUCE + STOP)
    add("surrogates", P(4) + EMPTY_LIST + MARK + bu("a\ud800b") + bu("\udfff") + APPENDS + STOP)
    return out


# =============================================================================================
# Mutations: at opcode boundaries found with pickletools.genops.
# =============================================================================================

INTERESTING_INTS = [0, 1, 2, 7, 8, 15, 16, 255, 256, 1000, 4096, 65535, 65536, 2**31 - 1, 2**31,
                    2**32, 2**40, 2**60, 2**61 - 1, 2**62, 2**63 - 1, 2**63, 2**64, -1, -2, -4,
                    -(2**31), -(2**63), 10**30, 10**400]
INTERESTING_FLOATS = [0.0, -0.0, 1.0, 2.0**61, 2.0**-61, 1e308, 5e-324, float("inf"), float("nan"), -1.0]
LEN_OPS = {"SHORT_BINUNICODE": "B", "SHORT_BINBYTES": "B", "SHORT_BINSTRING": "B", "BINUNICODE": "<I",
           "BINBYTES": "<I", "BINSTRING": "<i", "BINUNICODE8": "<Q", "BINBYTES8": "<Q",
           "BYTEARRAY8": "<Q", "LONG1": "B", "LONG4": "<i"}
MEMO_OPS = {"BINGET": "B", "BINPUT": "B", "LONG_BINGET": "<I", "LONG_BINPUT": "<I"}
INT_OPS = {"BININT1", "BININT2", "BININT", "LONG1", "LONG4"}
OPCODE_BYTES = [op.code.encode("latin-1") for op in pickletools.opcodes]

GLOBALS = sorted(ALLOWED_GLOBALS) + [("os", "system"), ("builtins", "eval"), ("numpy", "load"),
                                      ("builtins", "getattr"), ("copyreg", "_reconstructor")]


def snippets():
    s = [NONE, TRUE, FALSE, I(0), I(1), I(255), I(65536), I(2**40), I(-1), I(MOD), I(10**400), F(1.5),
         F(2.0**61), su(""), su("a"), su("latin1"), su("\u20ac"), bu("a\ud800b"), su("C"), su("F"),
         su("<i4"), su(">f8"), su("|O8"), su("<M8[ns]"), su("i2"), b"C\x04abcd", b"C\x00",
         b"\x96" + struct.pack("<Q", 4) + b"abcd", EMPTY_LIST, EMPTY_DICT, EMPTY_SET, EMPTY_TUPLE,
         MARK, TUPLE, T1, T2, T3, b"l", b"d", APPEND, APPENDS, SETITEM, SETITEMS, ADDITEMS,
         FROZENSET, MEMO, BP(0), BP(1), BP(3), BG(0), BG(1), BG(2), BG(5), b"j\x00\x00\x00\x00",
         POP, b"1", REDUCE, BUILD, NEWOBJ, NB, RO, STOP, b"2", b"\x92", b"\x82\x01",
         tup(I(3), su("<"), NONE, NONE, NONE, I(-1), I(-1), I(0)), tup(I(1)), tup(I(2**40)),
         tup(I(0)), tup(I(4)), tup(I(1), tup(I(4)), NONE, FALSE, b"C\x10" + bytes(16))]
    s += [sg(m, n) for m, n in GLOBALS]
    s += [b"c%s\n%s\n" % (m.encode(), n.encode()) for m, n in GLOBALS[:6]]
    return s


SNIPPETS = snippets()


class Mutator:
    def __init__(self, rng, seeds):
        self.rng = rng
        self.seeds = seeds
        self.small = [s for s in seeds if len(s.data) <= 64 << 10]
        # seeds over 2 MiB (the near-limit bombs) are probed as they are, not mutated
        self.large = [s for s in seeds if 64 << 10 < len(s.data) <= 2 << 20]
        self.large_share = 0.1

    def pick(self):
        r = self.rng.random()
        if self.large and r < self.large_share:
            return self.rng.choice(self.large)
        return self.rng.choice(self.small)

    def mutant(self):
        """(data, buffers, description) of one mutant."""
        rng = self.rng
        seed = self.pick()
        data, bufs, log = seed.data, list(seed.bufs), [seed.name]
        offs = list(seed.offs) if len(seed.offs) < 200_000 else None
        rounds = rng.choice((1, 1, 1, 2, 2, 3, 4))
        for r in range(rounds):
            if offs is None or len(offs) < 2:  # huge seed: byte-level only, near the ends
                data, what = self.flip(data)
                log.append(what)
                continue
            kind = rng.choice(("flip", "subst", "insert", "insert", "delete", "length", "int", "int",
                               "splice", "dup", "dup", "memo", "memo", "buffer", "copyop"))
            try:
                data, what = getattr(self, kind)(data, offs)
            except (struct.error, ValueError, IndexError, OverflowError, MemoryError):
                data, what = self.flip(data)
            if kind == "buffer":
                bufs = self.resize_buffers(bufs)
                what = "buffer sizes %s" % [len(b) for b in bufs]
            elif r + 1 < rounds:  # boundaries for the next round
                offs = opcode_offsets(data) if len(data) <= 1 << 20 else None
            log.append(what)
        # keep the NEXT_BUFFER count right most of the time: the interesting checks are behind it
        if rng.random() < 0.9 and (bufs or b"\x97" in data):
            want = count_next_buffer(data)
            if want is not None and want != len(bufs):
                pool = bufs + [fill(rng.choice((0, 8, 16, 64, 4096, 8192)))]
                bufs = [pool[i] if i < len(bufs) else rng.choice(pool) for i in range(want)]
        if rng.random() < 0.25:
            data = reframe(data)
            log.append("reframe")
        return data, bufs, log

    def op_at(self, offs):
        i = self.rng.randrange(len(offs) - 1)
        return i, offs[i], offs[i + 1]

    def flip(self, data, offs=None):
        rng = self.rng
        if not data:
            return bytes([rng.randrange(256)]), "flip empty"
        n = len(data)
        pos = rng.randrange(n) if n < 1 << 16 or rng.random() < 0.5 else rng.choice(
            (rng.randrange(min(n, 4096)), n - 1 - rng.randrange(min(n, 4096))))
        if rng.random() < 0.5:
            b = data[pos] ^ (1 << rng.randrange(8))
        else:
            b = rng.randrange(256)
        return data[:pos] + bytes([b]) + data[pos + 1:], "flip @%d -> %02x" % (pos, b)

    def subst(self, data, offs):
        i, s, e = self.op_at(offs)
        code = self.rng.choice(OPCODE_BYTES)
        return data[:s] + code + data[s + 1:], "subst @%d %r" % (s, code)

    def insert(self, data, offs):
        i = self.rng.randrange(1, len(offs))  # never before PROTO
        snip = self.rng.choice(SNIPPETS)
        return data[:offs[i]] + snip + data[offs[i]:], "insert @%d %r" % (offs[i], snip[:24])

    def copyop(self, data, offs):
        other = self.pick()
        o = list(other.offs) if len(other.offs) < 200_000 else None
        if not o or len(o) < 3:
            return self.insert(data, offs)
        j = self.rng.randrange(1, len(o) - 1)
        k = min(len(o) - 1, j + self.rng.choice((1, 1, 2, 3, 5, 10)))
        piece = other.data[o[j]:o[k]]
        i = self.rng.randrange(1, len(offs))
        return data[:offs[i]] + piece + data[offs[i]:], "copy %d ops of %s @%d" % (k - j, other.name, offs[i])

    def delete(self, data, offs):
        if len(offs) < 3:
            return self.flip(data)
        i = self.rng.randrange(1, len(offs) - 1)
        k = min(len(offs) - 1, i + self.rng.choice((1, 1, 1, 2, 3, 8)))
        return data[:offs[i]] + data[offs[k]:], "delete ops %d..%d" % (i, k)

    def _op(self, data, offs, names):
        cands = []
        for i in range(len(offs) - 1):
            op = OPNAME.get(data[offs[i]])
            if op in names:
                cands.append(i)
            if len(cands) > 2000:
                break
        if not cands:
            return None
        i = self.rng.choice(cands)
        return i, offs[i], offs[i + 1], OPNAME[data[offs[i]]]

    def length(self, data, offs):
        hit = self._op(data, offs, LEN_OPS)
        if hit is None:
            return self.int(data, offs)
        i, s, e, name = hit
        fmt = LEN_OPS[name]
        size = struct.calcsize(fmt)
        old = struct.unpack(fmt, data[s + 1:s + 1 + size])[0]
        rng = self.rng
        if rng.random() < 0.5:  # consistent: new content of another length
            n = rng.choice((0, 1, old + 1, max(0, old - 1), 255, 256, 4096, 70000))
            lim = {"B": 255, "<I": 2**32 - 1, "<i": 2**31 - 1, "<Q": 2**64 - 1}[fmt]
            n = min(n, lim, 1 << 20)
            body = data[s + 1 + size:e]
            body = (body * (n // max(1, len(body)) + 1))[:n] if body else b"\x01" * n
            if name in ("LONG1", "LONG4") and n and rng.random() < 0.5:
                body = body[:-1] + b"\x7f"
            return data[:s + 1] + struct.pack(fmt, n) + body + data[e:], "relength %s @%d %d->%d" % (name, s, old, n)
        n = rng.choice((0, old + 1, old - 1, old * 2, 2**31 - 1, 2**32 - 1, 2**40, 2**63))
        try:
            packed = struct.pack(fmt, n)
        except struct.error:
            packed = struct.pack(fmt, 0)
        return data[:s + 1] + packed + data[s + 1 + size:], "length field %s @%d %d->%d" % (name, s, old, n)

    def int(self, data, offs):
        rng = self.rng
        hit = self._op(data, offs, INT_OPS | {"BINFLOAT"})
        if hit is None:
            return self.insert(data, offs)
        i, s, e, name = hit
        if name == "BINFLOAT":
            x = rng.choice(INTERESTING_FLOATS)
            return data[:s] + F(x) + data[e:], "float @%d -> %r" % (s, x)
        n = rng.choice(INTERESTING_INTS)
        if rng.random() < 0.3:
            n += rng.choice((-1, 1))
        return data[:s] + I(n) + data[e:], "int @%d -> %d" % (s, n)

    def splice(self, data, offs):
        other = self.pick()
        o = list(other.offs) if len(other.offs) < 200_000 else None
        if not o or len(o) < 3:
            return self.flip(data)
        i = self.rng.randrange(1, len(offs))
        j = self.rng.randrange(1, len(o))
        return data[:offs[i]] + other.data[o[j]:], "splice @%d + %s from op %d" % (offs[i], other.name, j)

    def dup(self, data, offs):
        if len(offs) < 3:
            return self.flip(data)
        i = self.rng.randrange(1, len(offs) - 1)
        k = min(len(offs) - 1, i + self.rng.choice((1, 1, 2, 3, 4, 6, 8)))
        run = data[offs[i]:offs[k]]
        times = self.rng.choice((2, 3, 10, 100, 1000, 5000, 50_000))
        times = max(1, min(times, (4 << 20) // max(1, len(run))))
        return data[:offs[k]] + run * times + data[offs[k]:], "dup ops %d..%d x%d" % (i, k, times)

    def memo(self, data, offs):
        rng = self.rng
        hit = self._op(data, offs, MEMO_OPS)
        if hit is None or rng.random() < 0.3:
            i = rng.randrange(1, len(offs))
            snip = rng.choice((MEMO, BG(rng.randrange(8)), BP(rng.randrange(8)), BG(0) + BG(0) + T2))
            return data[:offs[i]] + snip + data[offs[i]:], "memo insert @%d %r" % (offs[i], snip)
        i, s, e, name = hit
        fmt = MEMO_OPS[name]
        old = struct.unpack(fmt, data[s + 1:e])[0]
        n = rng.choice((0, 1, old + 1, max(0, old - 1), rng.randrange(32), 255))
        return data[:s + 1] + struct.pack(fmt, n) + data[e:], "memo %s @%d %d->%d" % (name, s, old, n)

    def buffer(self, data, offs):
        return data, "buffer"  # the buffers themselves: resize_buffers

    def resize_buffers(self, bufs):
        bufs = list(bufs)
        rng = self.rng
        if not bufs or rng.random() < 0.2:
            bufs.append(fill(rng.choice((0, 8, 16, 4096))))
        k = rng.randrange(len(bufs))
        n = len(bufs[k])
        bufs[k] = fill(max(0, rng.choice((0, n - 1, n + 1, n // 2, n - 8, n + 8))))
        return bufs


OPNAME = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}


def count_next_buffer(data):
    offs = opcode_offsets(data)
    if len(offs) < 2 or data[offs[-2]] != 0x2E:
        return None  # no STOP: the validator refuses it whatever the buffers
    return sum(1 for o in offs[:-1] if data[o] == 0x97)

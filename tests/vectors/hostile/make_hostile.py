#!/usr/bin/env python3
"""Writes the hostile pickles of tests/vectors/hostile: every one must be rejected by
`dmapickle check` (general profile) with the reason given in manifest.json.

usage: make_hostile.py [OUTDIR]   (default: the directory of this script)

Each case is NAME.pkl (+ NAME.bufN out-of-band buffers) and a manifest entry
{"name", "note", "reason"} where `reason` is the phrase `dmapickle check` must print after
`rejected: byte N, OPCODE: ` (null: any reason). The bytes are built by hand (not by pickle.dumps) so that
each one isolates one attack: code-exec globals, numpy arguments that reach outside their
buffer or make numpy interpret bytes as objects, container opcodes that would call
arbitrary methods, memo/stack/length bombs, malformed framing; and (issue 10) pickles that
call nothing bad but hurt the process that loads them: values nested deeper than CPython's C
code survives, allocation and hashing amplification, arrays of a huge logical size, calls that
are accepted and then raise. Those are rejected in well under a second with the default limits
of `dmapickle check` (--max-depth 100, --max-alloc 256 MiB, --max-collisions 32,
--max-array-bytes 1 GiB); each is sized to exceed its default.
"""
import json
import math
import os
import struct
import sys

# ---- opcode helpers --------------------------------------------------------------------------


def P(n):
    return b"\x80" + bytes([n])


def su(s):  # SHORT_BINUNICODE
    b = s.encode() if isinstance(s, str) else s
    return b"\x8c" + bytes([len(b)]) + b


def sb(b):  # SHORT_BINBYTES
    return b"C" + bytes([len(b)]) + b


def sg(module, name):  # STACK_GLOBAL from literals
    return su(module) + su(name) + b"\x93"


def gl(module, name):  # GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def I(n):  # an int the way CPython writes it
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if 0 <= n < 65536:
        return b"M" + struct.pack("<H", n)
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    nbytes = (n.bit_length() + 8) // 8
    return b"\x8a" + bytes([nbytes]) + n.to_bytes(nbytes, "little", signed=True)


MARK, STOP, NONE, TRUE, FALSE = b"(", b".", b"N", b"\x88", b"\x89"
TUPLE, T1, T2, T3, REDUCE, NEWOBJ, BUILD = b"t", b"\x85", b"\x86", b"\x87", b"R", b"\x81", b"b"
NB, RO, MEMO = b"\x97", b"\x98", b"\x94"
EMPTY_LIST, EMPTY_DICT, EMPTY_SET, EMPTY_TUPLE = b"]", b"}", b"\x8f", b")"
POP = b"0"
APPEND, APPENDS, SETITEM, SETITEMS, ADDITEMS, FROZENSET = b"a", b"e", b"s", b"u", b"\x90", b"\x91"


def tup(*items):
    return MARK + b"".join(items) + TUPLE


def BG(i):
    return b"h" + bytes([i])


def BP(i):  # BINPUT
    return b"q" + bytes([i])


def F(x):  # BINFLOAT
    return b"G" + struct.pack(">d", x)


def bb(b):  # BINBYTES (4-byte length)
    return b"B" + struct.pack("<I", len(b)) + b


def bu(s):  # BINUNICODE (4-byte length)
    b = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(b)) + b


def ndarray(shape, dtype="<i4", data=NB, offset=None, strides=NONE, order="C", extra=()):
    off = I(0) if offset is None else offset
    args = [tup(*[I(d) for d in shape]), su(dtype), data, off, strides, su(order), *extra]
    return sg("numpy", "ndarray") + tup(*args) + NEWOBJ


def dtype_obj(code, order="<", memo=False):
    made = sg("numpy", "dtype") + tup(su(code), FALSE, TRUE) + REDUCE + (MEMO if memo else b"")
    state = tup(I(3), su(order), NONE, NONE, NONE, I(-1), I(-1), I(0))
    return made + state + BUILD


def frombuffer(data, dtype, shape, order="C", module="numpy._core.numeric"):
    return sg(module, "_frombuffer") + tup(data, dtype, tup(*[I(d) for d in shape]), su(order)) + REDUCE


def reconstruct(dtype, shape, raw, fortran=False):
    made = sg("numpy._core.multiarray", "_reconstruct") + tup(sg("numpy", "ndarray"), tup(I(0)), sb(b"b")) + REDUCE
    state = tup(I(1), tup(*[I(d) for d in shape]), dtype, TRUE if fortran else FALSE, raw)
    return made + state + BUILD


CMD = su("echo dmapickle-validator-missed-this")

# ---- the cases: (name, note, reason phrase, pickle bytes, [buffer lengths]) -----------------

CASES = [
    # code execution through globals
    ("h01_os_system_stack_global", "os.system via STACK_GLOBAL + REDUCE",
     "global not in the allowlist", P(4) + sg("os", "system") + CMD + T1 + REDUCE + STOP, []),
    ("h02_builtins_exec", "builtins.exec of source text",
     "global not in the allowlist", P(4) + sg("builtins", "exec") + su("import os") + T1 + REDUCE + STOP, []),
    ("h03_subprocess_popen_global", "subprocess.Popen via GLOBAL (protocol 2)",
     "global not in the allowlist", P(2) + gl("subprocess", "Popen") + MARK + CMD + b"l" + T1 + REDUCE + STOP, []),
    ("h04_builtins_getattr_global", "builtins.getattr via GLOBAL",
     "global not in the allowlist", P(2) + gl("builtins", "getattr") + STOP, []),
    ("h05_numpy_load", "allowed module, disallowed name: numpy.load (pickle loader)",
     "global not in the allowlist", P(4) + sg("numpy", "load") + su("/etc/passwd") + T1 + REDUCE + STOP, []),
    ("h06_numpy_scalar_object_dtype", "numpy scalar(dtype('O'), bytes): a scalar whose bytes would be an object pointer",
     "numpy dtype not in the allowlist",
     P(4) + sg("numpy.core.multiarray", "scalar") + dtype_obj("O", "|") + sb(b"\0" * 8) + T2 + REDUCE + STOP, []),
    ("h07_dotted_name_builtins", "dotted attribute path under builtins",
     "global not in the allowlist", P(4) + sg("builtins", "complex.__class__") + STOP, []),
    ("h08_copyreg_reconstructor", "copyreg._reconstructor is not needed for plain data",
     "global not in the allowlist",
     P(2) + gl("copyreg", "_reconstructor") + tup(gl("os", "system")) + REDUCE + STOP, []),
    ("h09_memo_strings_numpy_load", "module and name fetched from the memo: numpy.load",
     "global not in the allowlist",
     P(4) + su("numpy") + MEMO + su("load") + MEMO + b"00" + BG(0) + BG(1) + b"\x93" + STOP, []),
    ("h10_stack_global_of_ints", "STACK_GLOBAL on values that are not str literals",
     "STACK_GLOBAL arguments are not str literals", P(4) + I(1) + I(2) + b"\x93" + STOP, []),
    ("h11_stack_global_of_reduced_str", "module name computed by a call, not a literal",
     "STACK_GLOBAL arguments are not str literals",
     P(4) + sg("builtins", "complex") + tup(I(1)) + REDUCE + su("system") + b"\x93" + STOP, []),
    ("h12_reduce_on_str", "REDUCE on a value that is not callable",
     "call of something that is not an allowed callable", P(4) + su("os") + EMPTY_TUPLE + REDUCE + STOP, []),
    ("h13_reduce_on_list", "REDUCE on a list",
     "call of something that is not an allowed callable", P(4) + EMPTY_LIST + EMPTY_TUPLE + REDUCE + STOP, []),
    ("h14_newobj_ex", "NEWOBJ_EX on numpy.ndarray",
     "opcode not allowed", P(4) + sg("numpy", "ndarray") + EMPTY_TUPLE + EMPTY_DICT + b"\x92" + STOP, []),
    ("h15_ext2", "EXT2: callable from the copyreg extension registry",
     "opcode not allowed", P(2) + b"\x83\x01\x00" + EMPTY_TUPLE + REDUCE + STOP, []),
    ("h16_ext4", "EXT4", "opcode not allowed", P(2) + b"\x84\x01\x00\x00\x00" + STOP, []),
    ("h17_persid", "PERSID: persistent id resolved by the unpickler",
     "opcode not allowed", P(2) + b"Pany\n" + STOP, []),
    ("h18_inst_allowed_global", "INST even with an allowed class (protocol 0 call form)",
     "opcode not allowed", P(2) + MARK + b"ibuiltins\ncomplex\n" + STOP, []),
    ("h19_inst_os_system_p2", "INST os.system after PROTO 2",
     "global not in the allowlist", P(4) + MARK + CMD + b"ios\nsystem\n" + STOP, []),
    ("h20_obj_complex", "OBJ with an allowed class",
     "opcode not allowed", P(4) + MARK + sg("builtins", "complex") + I(1) + b"o" + STOP, []),
    ("h21_newobj_on_complex", "NEWOBJ on an allowed callable that only REDUCE may call",
     "arguments not accepted", P(4) + sg("builtins", "complex") + tup(I(1)) + NEWOBJ + STOP, []),
    ("h22_codecs_encode_zlib", "_codecs.encode with a codec other than latin1 (zlib bomb)",
     "arguments not accepted",
     P(4) + gl("_codecs", "encode") + su("x") + su("zlib_codec") + T2 + REDUCE + STOP, []),
    ("h23_bytes_of_int", "builtins.bytes(2**40): allocation bomb",
     "arguments not accepted", P(2) + gl("builtins", "bytes") + tup(I(2**40)) + REDUCE + STOP, []),
    ("h24_bytearray_of_int", "builtins.bytearray(2**40): allocation bomb",
     "arguments not accepted", P(2) + gl("builtins", "bytearray") + tup(I(2**40)) + REDUCE + STOP, []),
    # BUILD
    ("h25_build_on_dict", "BUILD on a dict would call __setstate__ / update __dict__",
     "BUILD on an object that takes no such state", P(4) + EMPTY_DICT + EMPTY_DICT + BUILD + STOP, []),
    ("h26_build_on_list", "BUILD on a list",
     "BUILD on an object that takes no such state", P(4) + EMPTY_LIST + tup(I(1)) + BUILD + STOP, []),
    ("h27_build_dtype_twice", "second BUILD on a dtype already in use",
     "BUILD on an object that takes no such state",
     P(4) + dtype_obj("i4") + tup(I(3), su("<"), NONE, NONE, NONE, I(-1), I(-1), I(0)) + BUILD + STOP, []),
    ("h28_dtype_state_structured", "numpy.dtype + BUILD with fields: structured dtype",
     "numpy dtype not in the allowlist",
     P(4) + sg("numpy", "dtype") + tup(su("V8"), FALSE, TRUE) + REDUCE + STOP, []),
    ("h29_dtype_state_with_names", "numpy.dtype('i4') + BUILD state carrying names/fields",
     "numpy dtype not in the allowlist",
     P(4) + sg("numpy", "dtype") + tup(su("i4"), FALSE, TRUE) + REDUCE
     + tup(I(3), su("|"), NONE, tup(su("a")), EMPTY_DICT, I(8), I(1), I(16)) + BUILD + STOP, []),
    ("h30_dtype_object_reduce", "numpy.dtype('O8'): object dtype via REDUCE",
     "numpy dtype not in the allowlist",
     P(4) + sg("numpy", "dtype") + tup(su("O8"), FALSE, TRUE) + REDUCE + STOP, []),
    ("h31_dtype_flags_object", "dtype state with object flags",
     "numpy dtype not in the allowlist",
     P(4) + sg("numpy", "dtype") + tup(su("i8"), FALSE, TRUE) + REDUCE
     + tup(I(3), su("<"), NONE, NONE, NONE, I(-1), I(-1), I(63)) + BUILD + STOP, []),
    # numpy.ndarray NEWOBJ arguments
    ("h32_ndarray_object_dtype_str", "ndarray over raw bytes with dtype '|O8'",
     "numpy dtype not in the allowlist", P(5) + ndarray((2,), "|O8") + STOP, [16]),
    ("h33_ndarray_void_dtype", "ndarray with a void dtype",
     "numpy dtype not in the allowlist", P(5) + ndarray((2,), "|V8") + STOP, [16]),
    ("h34_ndarray_datetime_dtype", "ndarray with a datetime dtype",
     "numpy dtype not in the allowlist", P(5) + ndarray((2,), "<M8[ns]") + STOP, [16]),
    ("h35_ndarray_structured_dtype_str", "ndarray with a structured dtype string",
     "numpy dtype not in the allowlist", P(5) + ndarray((2,), "[('a', '<i4'), ('b', 'O')]") + STOP, [16]),
    ("h36_ndarray_huge_offset", "ndarray at offset 2**40 past a 16-byte buffer",
     "array bytes do not fit its buffer", P(5) + ndarray((4,), offset=I(2**40)) + STOP, [16]),
    ("h37_ndarray_offset_past_end", "ndarray offset 8 + 16 bytes over a 16-byte buffer",
     "array bytes do not fit its buffer", P(5) + ndarray((4,), offset=I(8)) + STOP, [16]),
    ("h38_ndarray_strides_escape", "strides walk 800 bytes past a 16-byte buffer",
     "array strides reach outside", P(5) + ndarray((100,), strides=tup(I(8))) + STOP, [16]),
    ("h39_ndarray_negative_strides", "negative strides read before the buffer",
     "array strides reach outside", P(5) + ndarray((4,), strides=tup(I(-4))) + STOP, [16]),
    ("h40_ndarray_strides_count", "two strides for one dimension",
     "array strides reach outside", P(5) + ndarray((4,), strides=tup(I(4), I(4))) + STOP, [16]),
    ("h41_shape_overflow", "shape (2**62, 2**62): nbytes overflows",
     "array shape x itemsize overflows", P(5) + ndarray((2**62, 2**62)) + STOP, [16]),
    ("h42_shape_negative", "shape (-1,)",
     "array shape is not a tuple of non-negative ints", P(5) + ndarray((-1,)) + STOP, [16]),
    ("h43_ndarray_without_buffer", "ndarray(shape, dtype): uninitialised heap memory",
     "arguments not accepted",
     P(5) + sg("numpy", "ndarray") + tup(tup(I(4)), su("<i4")) + NEWOBJ + STOP, []),
    ("h44_ndarray_buffer_too_short", "array of 400 bytes over a 16-byte buffer",
     "array bytes do not fit its buffer", P(5) + ndarray((100,)) + STOP, [16]),
    ("h45_ndarray_data_is_str", "ndarray data is a str",
     "array data is not a buffer", P(5) + ndarray((4,), data=su("x" * 16)) + STOP, []),
    ("h46_ndarray_bad_order", "order 'K'",
     "array order is not 'C' or 'F'", P(5) + ndarray((4,), order="K") + STOP, [16]),
    ("h47_ndarray_too_many_dims", "17 dimensions (beyond MAX_NDIM 16, the encoder's and validator's limit)",
     "array shape is not a tuple", P(5) + ndarray((1,) * 17) + STOP, [4]),
    # numpy's own constructors with bad arguments
    ("h48_frombuffer_too_long", "_frombuffer shape needs more bytes than the buffer has",
     "array bytes do not fit its buffer", P(5) + frombuffer(NB, dtype_obj("i2"), (100,)) + STOP, [20]),
    ("h49_frombuffer_unbuilt_dtype", "_frombuffer with a dtype whose state was never set",
     "object used before its BUILD state was set",
     P(5) + sg("numpy._core.numeric", "_frombuffer")
     + tup(NB, sg("numpy", "dtype") + tup(su("i2"), FALSE, TRUE) + REDUCE, tup(I(10)), su("C")) + REDUCE + STOP, [20]),
    ("h50_reconstruct_raw_short", "_reconstruct state with 4 bytes for a 40-byte array",
     "array bytes do not fit its buffer", P(4) + reconstruct(dtype_obj("i4"), (10,), sb(b"\0" * 4)) + STOP, []),
    ("h51_reconstruct_raw_list", "_reconstruct state with a list as data (object arrays)",
     "array data is not a buffer", P(4) + reconstruct(dtype_obj("i4"), (1,), EMPTY_LIST) + STOP, []),
    ("h52_reconstruct_wrong_class", "_reconstruct of builtins.complex instead of numpy.ndarray",
     "global used as a value",
     P(4) + sg("numpy._core.multiarray", "_reconstruct") + tup(sg("builtins", "complex"), tup(I(0)), sb(b"b")) + REDUCE + STOP, []),
    ("h53_binget_unbuilt_dtype", "a dtype fetched from the memo before its BUILD (double BUILD)",
     "object memoized twice or fetched before its BUILD",
     P(4) + sg("numpy", "dtype") + tup(su("i2"), FALSE, TRUE) + REDUCE + MEMO + BG(0) + STOP, []),
    ("h54_global_as_value", "a list holding the numpy.ndarray class",
     "global used as a value", P(4) + EMPTY_LIST + sg("numpy", "ndarray") + APPEND + STOP, []),
    ("h55_dtype_as_value", "a dict holding a numpy dtype object",
     "numpy dtype outside an array constructor", P(4) + EMPTY_DICT + su("d") + dtype_obj("i4") + SETITEM + STOP, []),
    # containers: wrong kind (would call arbitrary methods) and unhashables
    ("h56_appends_on_dict", "APPENDS on a dict (calls .extend/.append of the object)",
     "items added to the wrong kind of container", P(4) + EMPTY_DICT + MARK + I(1) + APPENDS + STOP, []),
    ("h57_setitems_on_list", "SETITEMS on a list (calls __setitem__ of the object)",
     "items added to the wrong kind of container", P(4) + EMPTY_LIST + MARK + I(1) + I(2) + SETITEMS + STOP, []),
    ("h58_additems_on_frozenset", "ADDITEMS on a frozenset (calls .add of the object)",
     "items added to the wrong kind of container", P(4) + MARK + FROZENSET + MARK + I(1) + ADDITEMS + STOP, []),
    ("h59_append_on_complex", "APPEND on the result of a call",
     "items added to the wrong kind of container",
     P(4) + sg("builtins", "complex") + tup(I(1)) + REDUCE + I(2) + APPEND + STOP, []),
    ("h60_set_of_lists", "set containing a list",
     "unhashable value", P(4) + EMPTY_SET + MARK + EMPTY_LIST + ADDITEMS + STOP, []),
    ("h61_dict_key_list", "dict with a list key",
     "unhashable value", P(4) + EMPTY_DICT + EMPTY_LIST + I(1) + SETITEM + STOP, []),
    ("h62_frozenset_of_dict", "frozenset containing a dict",
     "unhashable value", P(4) + MARK + EMPTY_DICT + FROZENSET + STOP, []),
    ("h63_set_reduce_of_lists", "builtins.set([[1]]) via REDUCE",
     "unhashable value",
     P(2) + gl("builtins", "set") + EMPTY_LIST + MARK + EMPTY_LIST + APPENDS + T1 + REDUCE + STOP, []),
    ("h64_dict_key_tuple_with_list", "dict key: a tuple holding a list",
     "unhashable value", P(4) + EMPTY_DICT + EMPTY_LIST + T1 + I(1) + SETITEM + STOP, []),
    ("h65_odd_setitems", "SETITEMS with a key and no value",
     "SETITEMS with a key but no value", P(4) + EMPTY_DICT + MARK + su("k") + SETITEMS + STOP, []),
    # stack, memo and length bombs
    ("h66_nesting_bomb_lists", "5000 nested EMPTY_LIST (default stack: 4096)",
     "stack deeper than the limit", P(4) + EMPTY_LIST * 5000 + APPEND * 4999 + STOP, []),
    ("h67_nesting_bomb_marks", "5000 MARKs",
     "stack deeper than the limit", P(4) + MARK * 5000 + STOP, []),
    ("h68_nesting_bomb_tuples", "tuple nesting deeper than the stack",
     "stack deeper than the limit", P(4) + (MARK + EMPTY_TUPLE) * 3000 + TUPLE * 3000 + STOP, []),
    ("h69_memo_bomb_long_binput", "LONG_BINPUT 0xffffffff (the C unpickler sizes its memo to the index)",
     "memo index beyond the memo limit", P(4) + NONE + b"r\xff\xff\xff\xff" + STOP, []),
    ("h70_memo_bomb_memoize", "2**20 + 1 MEMOIZE (the default memo grows to 2**20 slots)",
     "memo index beyond the memo limit", P(4) + NONE + MEMO * (2**20 + 1) + STOP, []),
    ("h71_memo_missing", "BINGET of an index never written",
     "memo read of an empty slot", P(4) + BG(5) + STOP, []),
    ("h72_huge_long4", "LONG4 declaring 2**31-1 bytes, data truncated",
     "exceeds the", P(2) + b"\x8b\xff\xff\xff\x7f" + b"\x01" * 8 + STOP, []),
    ("h73_huge_binunicode8", "BINUNICODE8 declaring 2**63 bytes",
     "exceeds the", P(4) + b"\x8d" + struct.pack("<Q", 2**63) + b"abc" + STOP, []),
    ("h74_huge_bytearray8", "BYTEARRAY8 declaring 2**40 bytes",
     "exceeds the", P(5) + b"\x96" + struct.pack("<Q", 2**40) + b"abc" + STOP, []),
    ("h75_negative_binstring", "BINSTRING with a negative length",
     "negative length", P(2) + b"T\xff\xff\xff\xff" + STOP, []),
    # framing of the opcode stream
    ("h76_truncated_message", "a sensor message cut in the middle of an opcode",
     "pickle truncated inside this opcode", P(5) + EMPTY_DICT + MARK + su("seq") + b"J\x01\x00", []),
    ("h77_no_stop", "no STOP opcode",
     "pickle has no STOP", P(5) + EMPTY_DICT + MARK + su("seq") + I(1) + SETITEMS, []),
    ("h78_empty_file", "zero bytes", "pickle has no STOP", b"", []),
    ("h79_trailing_data", "bytes after STOP",
     "data after STOP", P(5) + NONE + STOP + b"cos\nsystem\n", []),
    ("h80_two_stops", "two STOPs (a second pickle hidden behind the first)",
     "data after STOP", P(5) + NONE + STOP + NONE + STOP, []),
    ("h81_two_values_at_stop", "STOP with two values on the stack",
     "STOP needs exactly one value", P(5) + NONE + NONE + STOP, []),
    ("h82_mark_at_stop", "STOP with a MARK on the stack",
     "STOP needs exactly one value", P(5) + MARK + NONE + STOP, []),
    ("h83_mid_stream_proto", "PROTO in the middle of the stream",
     "PROTO missing, repeated or unsupported", P(5) + EMPTY_LIST + P(2) + STOP, []),
    ("h84_proto_6", "PROTO 6", "PROTO missing, repeated or unsupported", P(6) + NONE + STOP, []),
    ("h85_protocol0_no_proto", "protocol 0 pickle (no PROTO)",
     "PROTO missing, repeated or unsupported", b"(lp0\nI1\na.", []),
    ("h86_opcode_above_protocol", "NEXT_BUFFER in a protocol-2 pickle",
     "opcode newer than the pickle's protocol", P(2) + NB + STOP, [4]),
    ("h87_frame_past_end", "FRAME longer than the pickle",
     "bad FRAME", P(4) + b"\x95" + struct.pack("<Q", 1000) + NONE + STOP, []),
    ("h88_opcode_crosses_frame", "an opcode straddling the end of its frame",
     "bad FRAME", P(4) + b"\x95" + struct.pack("<Q", 2) + su("abc") + STOP, []),
    ("h89_frame_inside_frame", "a FRAME starting inside another frame",
     "bad FRAME", P(4) + b"\x95" + struct.pack("<Q", 11) + b"\x95" + struct.pack("<Q", 2) + NONE + STOP, []),
    ("h90_unknown_opcode", "byte 0xff is no opcode", "unknown opcode", P(5) + b"\xff" + STOP, []),
    ("h91_dup", "DUP (never written by CPython)", "opcode not allowed", P(4) + EMPTY_LIST + b"2" + b"0" + STOP, []),
    ("h92_pop_mark_without_mark", "POP_MARK without a MARK", "no MARK to pop to", P(4) + NONE + b"1" + STOP, []),
    ("h93_tuple3_underflow", "TUPLE3 with one value", "stack underflow", P(4) + NONE + T3 + STOP, []),
    ("h94_tuple_across_mark", "TUPLE2 reaching below a MARK", "MARK used as a value",
     P(4) + NONE + MARK + NONE + T2 + STOP, []),
    ("h95_bad_utf8", "SHORT_BINUNICODE that is not UTF-8",
     "text argument is not valid UTF-8", P(4) + b"\x8c\x02\xff\xfe" + STOP, []),
    # out-of-band buffers
    ("h96_next_buffer_without_buffer", "NEXT_BUFFER with no buffer supplied",
     "more NEXT_BUFFER than out-of-band buffers", P(5) + NB + STOP, []),
    ("h97_unused_buffer", "two buffers supplied, one NEXT_BUFFER",
     "fewer NEXT_BUFFER than out-of-band buffers", P(5) + NB + STOP, [4, 4]),
    ("h98_readonly_on_bytes", "READONLY_BUFFER on bytes",
     "READONLY_BUFFER on a value that is not a buffer", P(5) + sb(b"abc") + RO + STOP, []),
    ("h99_message_array_buffer_short", "sensor message whose 8192-byte array has a 128-byte buffer",
     "array bytes do not fit its buffer",
     P(5) + EMPTY_DICT + MARK + su("seq") + I(1) + su("adc") + ndarray((1024, 4), "<i2") + SETITEMS + STOP, [128]),
]

# ---- issue 10: loading must be bounded in depth, memory and time ------------------------------
# Sizes: each case exceeds one default limit of `dmapickle check` by a clear margin, and is as
# small as that allows (the 300,000-deep chains are the depth at which CPython's recursive C
# hash/repr crash the interpreter; every other case is far smaller than the harm it does).

DEEP = 300_000
MOD = 2**61 - 1  # CPython's hash modulus for numbers (sys.hash_info.modulus)
U64 = 2**64


def appends_to_top(items, batch=1000):
    """The encoded `items` appended to the list on top of the stack, 1,000 per APPENDS as
    CPython does."""
    return b"".join(MARK + b"".join(items[i:i + batch]) + APPENDS for i in range(0, len(items), batch))


def appends(items):
    """A new list of the encoded `items`."""
    return EMPTY_LIST + appends_to_top(items)


def setitems(pairs, batch=1000):
    out = [EMPTY_DICT]
    for i in range(0, len(pairs), batch):
        out.append(MARK + b"".join(k + v for k, v in pairs[i:i + batch]) + SETITEMS)
    return b"".join(out)


def additems(items, batch=1000):
    out = [EMPTY_SET]
    for i in range(0, len(items), batch):
        out.append(MARK + b"".join(items[i:i + batch]) + ADDITEMS)
    return b"".join(out)


def memo_nest(start, wrap, n):
    """Nesting n deep through the memo, the stack never deeper than 3: memo 0 holds the current
    value; each step builds `wrap` around BINGET 0 and stores the result back into memo 0."""
    return start + BP(0) + POP + (wrap + BP(0) + POP) * n + BG(0)


def LBG(i):  # LONG_BINGET
    return b"j" + struct.pack("<I", i)


def LBP(i):  # LONG_BINPUT
    return b"r" + struct.pack("<I", i)


def memo_chain(start, wrap, n):
    """memo_nest without reusing a memo index (CPython never does, and a list's entry may not be
    overwritten): step k wraps LONG_BINGET k and stores the result at k + 1."""
    return start + LBP(0) + POP + b"".join(wrap(LBG(k)) + LBP(k + 1) + POP for k in range(n)) + LBG(n)


def tuple_hash(t):
    """CPython 3.8+'s tuple hash (Objects/tupleobject.c, tuplehash: xxHash's round and lanes)."""
    p1, p2, p5 = 11400714785074694791, 14029467366897019727, 2870177450012600261
    acc = p5
    for item in t:
        acc = (acc + (hash(item) % U64) * p2) % U64
        acc = ((acc << 31) | (acc >> 33)) % U64
        acc = (acc * p1) % U64
    acc = (acc + (len(t) ^ (p5 ^ 3527539))) % U64
    return 1546275796 if acc == U64 - 1 else (acc - U64 if acc >= 2**63 else acc)


def colliding_pairs(n):
    """n tuples (a, b), a = 0, 1, 2, ... and b an int solved so that every tuple has the hash of
    (0, 0): invert the last round of tuplehash for the lane b must contribute."""
    p1, p2, p5 = 11400714785074694791, 14029467366897019727, 2870177450012600261
    inv1, inv2 = pow(p1, -1, U64), pow(p2, -1, U64)
    target = hash((0, 0)) % U64
    x = ((target - (2 ^ (p5 ^ 3527539))) * inv1) % U64
    x = ((x >> 31) | (x << 33)) % U64  # rotate right 31: undo the rotate left
    out, a = [], 0
    while len(out) < n:
        acc = ((p5 + a * p2) % U64)
        acc = (((acc << 31) | (acc >> 33)) % U64) * p1 % U64
        lane = ((x - acc) * inv2) % U64
        if lane < MOD:
            b = lane
        elif lane > U64 - MOD and lane != U64 - 1:
            b = lane - U64  # a negative int hashes to -(|b| mod MOD)
        else:
            a += 1
            continue
        assert hash((a, b)) == hash((0, 0)) == tuple_hash((a, b)), (a, b)
        out.append((a, b))
        a += 1
    return out


def colliding_floats():
    """Floats with one hash: the hash of m * 2**e is m * 2**(e mod 61) mod 2**61-1, so
    x * 2.0**(61*k) hashes as x for every k that keeps it a finite, exact double; and
    (2**31+1) * 2**30 = 2**61 + 2**30 hashes as 2**30+1, so both families share one hash."""
    out = []
    for m, e0 in ((2**30 + 1, 0), (2**31 + 1, 30)):
        for k in range(-20, 20):
            e = e0 + 61 * k
            if -1074 <= e and m.bit_length() + e <= 1024:
                x = math.ldexp(float(m), e)
                assert x != 0.0 and math.frexp(x)[0] * 2**m.bit_length() == m
                out.append(x)
    assert len(set(map(hash, out))) == 1 and len(out) >= 60, len(out)
    return out


def bound_cases():
    cases = []

    def add(name, note, reason, data, buffers=()):
        cases.append((name, note, reason, data, list(buffers)))

    # nesting depth of the values built (the stack stays at depth 1 or 2)
    chain1 = NONE + T1 * DEEP
    chain2 = NONE + (NONE + T2) * DEEP
    add("h100_tuple1_chain_300k", "TUPLE1 x 300,000: a tuple nested 300k deep (hash/repr crash CPython)",
        "nesting depth", P(4) + chain1 + STOP)
    add("h101_tuple2_chain_300k", "(None, (None, ...)) nested 300,000 deep with TUPLE2",
        "nesting depth", P(4) + chain2 + STOP)
    add("h102_tuple1_chain_dict_key", "a 300k-deep tuple as a dict key: SETITEM's hash segfaults",
        "nesting depth", P(4) + EMPTY_DICT + chain1 + NONE + SETITEM + STOP)
    add("h103_tuple1_chain_set_item", "a 300k-deep tuple added to a set",
        "nesting depth", P(4) + EMPTY_SET + MARK + chain1 + ADDITEMS + STOP)
    add("h104_tuple1_chain_frozenset_item", "a 300k-deep tuple in a frozenset",
        "nesting depth", P(4) + MARK + chain1 + FROZENSET + STOP)
    add("h105_memo_nested_lists", "lists nested 5,000 deep through LONG_BINGET/LONG_BINPUT (stack depth 2)",
        "nesting depth", P(4) + memo_chain(EMPTY_LIST, lambda get: EMPTY_LIST + get + APPEND, 5000) + STOP)
    add("h106_memo_nested_dicts", "dicts nested 5,000 deep through the memo",
        "nesting depth", P(4) + memo_chain(EMPTY_DICT, lambda get: EMPTY_DICT + su("k") + get + SETITEM, 5000) + STOP)
    add("h107_memo_nested_tuples", "tuples nested 5,000 deep through the memo",
        "nesting depth", P(4) + memo_nest(NONE + T1, BG(0) + T1, 5000) + STOP)
    add("h108_memo_nested_frozensets", "(frozenset({(frozenset({...}),)}),) 4,000 deep through the memo, a dict key",
        "nesting depth",
        P(4) + EMPTY_DICT + memo_nest(NONE + T1, MARK + BG(0) + FROZENSET + T1, 2000) + NONE + SETITEM + STOP)
    # CPython does not cache tuple hashes: t = (t, t) built 40 times through the memo is 41
    # deep (under the depth limit) but hashing it visits 2**40 tuples, as a dict key: SETITEM
    # never returns. The expansion bound (nodes counted with multiplicity) refuses it.
    add("h126_shared_tuple_dag_dict_key", "t = (t, t) x 40 through the memo as a dict key: 2**40 hash steps",
        "expanded size", P(4) + EMPTY_DICT + memo_nest(NONE + T1, BG(0) + BG(0) + T2, 40) + NONE + SETITEM + STOP)
    # allocation: plain-data bombs and copies of one memoized value
    add("h109_empty_set_bomb", "1.3 M EMPTY_SET appended to one list: ~290 MB from 1.3 MB",
        "allocation bound", P(4) + appends([EMPTY_SET] * 1_300_000) + STOP)
    blob = bytes(range(256)) * 1024  # 256 KiB
    g = sg("builtins", "bytearray") + BP(1)
    add("h110_bytearray_copies", "256 KiB bytes memoized, bytearray(BINGET) x 1,200: 300 MB",
        "allocation bound",
        P(4) + EMPTY_LIST + BP(0) + g + bb(blob) + BP(2) + POP + POP
        + appends_to_top([BG(1) + BG(2) + T1 + REDUCE] * 1200) + STOP)
    text = "".join(chr(i) for i in range(32, 256)) * 1024 # 224 Ki chars, latin-1
    add("h111_codecs_encode_copies", "a 224 Ki-char str memoized, _codecs.encode(GET, 'latin1') x 1,400",
        "allocation bound",
        P(4) + EMPTY_LIST + BP(0) + sg("_codecs", "encode") + BP(1) + bu(text) + BP(2)
        + su("latin1") + BP(3) + POP + POP + POP
        + appends_to_top([BG(1) + BG(2) + BG(3) + T2 + REDUCE] * 1400) + STOP)
    add("h112_set_of_list_copies", "a list of 1,000 ints memoized, set(GET) x 12,000: ~400 MB",
        "allocation bound",
        P(4) + EMPTY_LIST + BP(0) + sg("builtins", "set") + BP(1)
        + appends([I(i) for i in range(1000)]) + BP(2) + POP + POP
        + appends_to_top([BG(1) + BG(2) + T1 + REDUCE] * 12_000) + STOP)
    add("h113_frozenset_of_list_copies", "a list of 1,000 ints memoized, frozenset(GET) x 12,000",
        "allocation bound",
        P(4) + EMPTY_LIST + BP(0) + sg("builtins", "frozenset") + BP(1)
        + appends([I(i) for i in range(1000)]) + BP(2) + POP + POP
        + appends_to_top([BG(1) + BG(2) + T1 + REDUCE] * 12_000) + STOP)
    raw = bytes(range(256)) * 1024  # 256 KiB = 65536 big-endian int32
    # memo: 0 list, 1 _reconstruct, 2 ndarray, 3 raw, 4 the dtype (memoized before its BUILD)
    head = (P(4) + EMPTY_LIST + BP(0) + sg("numpy._core.multiarray", "_reconstruct") + BP(1)
            + sg("numpy", "ndarray") + BP(2) + bb(raw) + BP(3) + POP + POP + POP)

    def arr(dt):
        return (BG(1) + BG(2) + tup(I(0)) + sb(b"b") + T3 + REDUCE
                + tup(I(1), tup(I(len(raw) // 4)), dt, FALSE, BG(3)) + BUILD)
    first_dtype = (sg("numpy", "dtype") + tup(su("i4"), FALSE, TRUE) + REDUCE + BP(4)
                   + tup(I(3), su(">"), NONE, NONE, NONE, I(-1), I(-1), I(0)) + BUILD)
    add("h114_reconstruct_byteswapped_copies",
        "_reconstruct + BUILD of a '>i4' array over one memoized 256 KiB bytes x 1,200 (each a copy)",
        "allocation bound", head + appends_to_top([arr(first_dtype)] + [arr(BG(4))] * 1199) + STOP)
    # hashing: keys with one CPython hash (quadratic inserts)
    ints = [I(i * MOD) for i in range(20_000)]
    add("h115_colliding_int_keys_dict", "dict of 20,000 int keys i*(2**61-1), all hash 0",
        "keys with one hash", P(4) + setitems([(k, NONE) for k in ints]) + STOP)
    add("h116_colliding_int_keys_set", "set of 2,000 ints i*(2**61-1)",
        "keys with one hash", P(4) + additems(ints[:2000]) + STOP)
    add("h117_colliding_int_keys_frozenset", "frozenset of 2,000 ints i*(2**61-1)",
        "keys with one hash", P(4) + MARK + b"".join(ints[:2000]) + FROZENSET + STOP)
    add("h118_colliding_int_keys_set_of_list", "builtins.set(list of 2,000 ints i*(2**61-1))",
        "keys with one hash", P(4) + sg("builtins", "set") + appends(ints[:2000]) + T1 + REDUCE + STOP)
    add("h119_colliding_float_keys", "dict keyed by floats m * 2**(61k) that share one hash",
        "keys with one hash", P(4) + setitems([(F(x), NONE) for x in colliding_floats()]) + STOP)
    pairs = colliding_pairs(2000)
    add("h120_colliding_tuple_keys", "dict of 2,000 (a, b) int tuples solved to hash as (0, 0)",
        "keys with one hash", P(4) + setitems([(I(a) + I(b) + T2, NONE) for a, b in pairs]) + STOP)
    cx = [complex(-1000003.0 * k, float(k)) for k in range(1, 2001)]
    assert len({hash(c) for c in cx}) == 1
    add("h121_colliding_complex_keys", "set of 2,000 complex(-1000003k, k), all hash 0",
        "keys with one hash",
        P(4) + sg("builtins", "complex") + BP(0) + POP
        + additems([BG(0) + F(c.real) + F(c.imag) + T2 + REDUCE for c in cx]) + STOP)
    # arrays
    add("h122_array_stride0_huge", "shape (2**40,) stride 0 over an 8-byte buffer: 8 TiB logical",
        "array logical size", P(5) + ndarray((2**40,), "<i8", strides=tup(I(0))) + STOP, [8])
    add("h123_array_zero_size_offset", "a zero-size array with strides at offset 2**60 of a 16-byte buffer",
        "array bytes do not fit its buffer", P(5) + ndarray((0,), offset=I(2**60), strides=tup(I(4))) + STOP, [16])
    # calls that are accepted and then raise
    add("h124_complex_of_huge_int", "complex(10**400) raises OverflowError",
        "arguments not accepted by the allowed callable",
        P(4) + sg("builtins", "complex") + tup(I(10**400)) + REDUCE + STOP)
    add("h125_codecs_encode_not_latin1", "_codecs.encode('\\u20ac', 'latin1') raises UnicodeEncodeError",
        "arguments not accepted by the allowed callable",
        P(4) + sg("_codecs", "encode") + su("\u20ac") + su("latin1") + T2 + REDUCE + STOP)
    # Python 2 names are mapped (`__builtin__` -> `builtins`) only below protocol 3: above,
    # CPython's find_class imports a module called `__builtin__` from sys.path, whatever it is.
    add("h127_python2_builtin_protocol4", "__builtin__.set([]) in a protocol 4 pickle: an import from sys.path",
        "Python 2 module name in a protocol 3+ pickle",
        P(4) + sg("__builtin__", "set") + EMPTY_LIST + T1 + REDUCE + STOP)
    add("h128_python2_builtin_protocol3_global", "GLOBAL __builtin__ bytearray() after PROTO 3",
        "Python 2 module name in a protocol 3+ pickle",
        P(3) + gl("__builtin__", "bytearray") + EMPTY_TUPLE + REDUCE + STOP)
    # A list, dict or set changed after a reference to it was put inside another value: the
    # holders recorded its depth and size as they were then (the fuzzer found the first one).
    grow = (MARK + I(1) * 1000 + APPENDS) * 20
    add("h129_list_grown_after_shared", "A in R = [A] * 2,000, then 20,000 items appended to A: repr(R) is 120 MB",
        "changed after it was put inside another value",
        P(4) + EMPTY_LIST + MEMO + MARK + EMPTY_LIST + MEMO + BG(1) * 1999 + APPENDS + BG(1) + grow + POP + STOP)
    add("h130_list_deepened_after_shared", "a chain of 60 lists, then 60 more nested into its last one (120 deep, limit 100)",
        "changed after it was put inside another value",
        P(4) + EMPTY_LIST + MEMO + (EMPTY_LIST + MEMO) * 60 + APPEND * 60 + BG(60) + EMPTY_LIST * 60 + APPEND * 60 + POP + STOP)
    add("h131_dict_grown_after_shared", "d in a list 2,000 times, then 10,000 items set in d",
        "changed after it was put inside another value",
        P(4) + EMPTY_LIST + MARK + EMPTY_DICT + MEMO + BG(0) * 1999 + APPENDS + BG(0)
        + b"".join(MARK + b"".join(I(k) + NONE for k in range(j, j + 500)) + SETITEMS for j in range(0, 10000, 500)) + POP + STOP)
    add("h132_set_grown_after_shared", "s in a list 2,000 times, then 10,000 items added to s",
        "changed after it was put inside another value",
        P(4) + EMPTY_LIST + MARK + EMPTY_SET + MEMO + BG(0) * 1999 + APPENDS + BG(0)
        + b"".join(MARK + b"".join(I(k) for k in range(j, j + 1000)) + ADDITEMS for j in range(0, 10000, 1000)) + POP + STOP)
    add("h133_list_memoized_twice", "a list memoized at 0 and 3, grown, entry 0 replaced, then BINGET 3 x 2,000 (stale, empty)",
        "object memoized twice",
        P(4) + EMPTY_LIST + MEMO + BP(3) + grow + POP + NONE + BP(0) + POP + EMPTY_LIST + MARK + BG(3) * 2000 + APPENDS + STOP)
    add("h134_list_memo_overwritten", "2,000 copies of a list fetched, the list grown, its memo entry replaced: the copies are stale",
        "memo entry of a list, dict or set overwritten",
        P(4) + EMPTY_LIST + MEMO + EMPTY_LIST + MARK + BG(0) * 2000 + BG(0) + grow + POP
        + NONE + BP(0) + POP + APPENDS + STOP)
    # References fetched from the memo to a list not finished yet (what CPython writes for
    # self-referencing data) are owed its final size and depth, counted at STOP.
    add("h135_copies_of_unfinished_list", "R = [A] * 2,000 from BINGET copies while A is unfinished, then 20,000 items added to A",
        "expanded size",
        P(4) + EMPTY_LIST + MEMO + EMPTY_LIST + MARK + BG(0) * 2000 + APPENDS + MEMO + POP + grow + POP + BG(1) + STOP)
    add("h136_copy_of_unfinished_list_deepened", "R, 50 lists deep, holds a copy of A while A is unfinished, then 60 lists are nested into A (111 deep)",
        "nesting depth",
        P(4) + EMPTY_LIST + MEMO + EMPTY_LIST * 50 + BG(0) + APPEND * 50 + MEMO + POP + EMPTY_LIST * 60 + APPEND * 60 + POP + BG(1) + STOP)
    add("h137_refers_back_to_two_unfinished", "one list holding references to two lists that are both unfinished",
        "more than one unfinished",
        P(4) + EMPTY_LIST + MEMO + EMPTY_LIST + MEMO + EMPTY_LIST + MARK + BG(0) + BG(1) + APPENDS + STOP)
    # numpy scalars: only an allowed dtype and exactly its itemsize of bytes; no state
    scalar = sg("numpy._core.multiarray", "scalar")
    add("h138_numpy_scalar_bytes_short", "scalar(dtype('f8'), 4 bytes) raises ValueError",
        "arguments not accepted by the allowed callable",
        P(4) + scalar + dtype_obj("f8") + sb(b"\0" * 4) + T2 + REDUCE + STOP)
    add("h139_numpy_scalar_of_str", "scalar(dtype('i8'), str): numpy encodes the text as latin-1 bytes; the validator takes bytes only",
        "arguments not accepted by the allowed callable",
        P(4) + scalar + dtype_obj("i8") + su("\0" * 8) + T2 + REDUCE + STOP)
    add("h140_numpy_scalar_void_dtype", "scalar(dtype('V8'), bytes): a void scalar",
        "numpy dtype not in the allowlist",
        P(4) + scalar + dtype_obj("V8", "|") + sb(b"\0" * 8) + T2 + REDUCE + STOP)
    add("h141_numpy_scalar_build", "BUILD on a numpy scalar would call its __setstate__",
        "BUILD on an object that takes no such state",
        P(4) + scalar + dtype_obj("f8") + sb(b"\0" * 8) + T2 + REDUCE + EMPTY_DICT + BUILD + STOP)
    add("h142_colliding_numpy_scalar_keys", "dict keyed by np.float64 floats m * 2**(61k) that share one hash",
        "keys with one hash",
        P(4) + sg("numpy._core.multiarray", "scalar") + MEMO + dtype_obj("f8", memo=True) + POP + POP
        + setitems([(BG(0) + BG(1) + sb(struct.pack("<d", x)) + T2 + REDUCE, NONE) for x in colliding_floats()]) + STOP)
    # protocol 2 spells a scalar's bytes as _codecs.encode(text, 'latin1'): the validator
    # hashes the ASCII ones and counts the others as opaque, which may share any hash
    asc = [x for x in colliding_floats() if max(struct.pack("<d", x)) < 0x80][:20]
    non = [x for x in colliding_floats() if max(struct.pack("<d", x)) >= 0x80][:20]
    encoded = lambda x: BG(0) + BG(2) + BG(1) + bu(struct.pack("<d", x).decode("latin1")) + BG(3) + T2 + REDUCE + T2 + REDUCE
    add("h143_colliding_numpy_scalar_keys_protocol2",
        "dict keyed by 40 np.float64 of one hash, protocol 2: 20 with ASCII bytes, 20 without",
        "keys with one hash",
        P(2) + gl("numpy.core.multiarray", "scalar") + BP(0) + POP + gl("_codecs", "encode") + BP(1) + POP
        + gl("numpy", "dtype") + tup(bu("f8"), FALSE, TRUE) + REDUCE
        + tup(I(3), bu("<"), NONE, NONE, NONE, I(-1), I(-1), I(0)) + BUILD + BP(2) + POP
        + bu("latin1") + BP(3) + POP
        + setitems([(encoded(x), NONE) for x in asc + non]) + STOP)
    # A tuple's hash is fixed within the process even where an item's is seeded or an address:
    # 20,000 such keys (319 KB) take CPython 10 s to load; 40 here.
    m = 2**61 - 1
    seeded = [("h144_colliding_tuple_keys_str", "dict keyed by ('a', i * (2**61 - 1)): the str's hash is seeded but one",
               su("a") + MEMO + POP, BG(0)),
              ("h145_colliding_tuple_keys_none", "dict keyed by (None, i * (2**61 - 1))", b"", NONE),
              ("h146_colliding_tuple_keys_nan", "dict keyed by (nan, i * (2**61 - 1)), one NaN object from the memo",
               F(math.nan) + MEMO + POP, BG(0)),
              ("h147_colliding_tuple_keys_empty_bytes", "dict keyed by (b'', i * (2**61 - 1)): b'' hashes to 0",
               b"", sb(b""))]
    for name, note, head, item in seeded:
        add(name, note, "keys with one hash",
            P(5) + head + setitems([(item + I(i * m) + T2, NONE) for i in range(1, 41)]) + STOP)
    add("h159_colliding_tuple_keys_text_and_its_code_units",
        "dict keyed by ('é', i * (2**61 - 1)) and (b'\\xe9', ...): CPython hashes 'é' as its latin-1 unit",
        "keys with one hash",
        P(5) + su("\u00e9") + MEMO + POP + sb(b"\xe9") + MEMO + POP
        + setitems([(BG(i % 2) + I(i * m) + T2, NONE) for i in range(1, 41)]) + STOP)
    add("h148_colliding_set_of_list_with_empty_str", "set(list) of 32 ints i * (2**61 - 1), 0 and '': all hash to 0",
        "keys with one hash",
        P(2) + gl("__builtin__", "set") + EMPTY_LIST + MARK + b"".join(I(i * m) for i in range(33))
        + bu("") + APPENDS + T1 + REDUCE + STOP)
    return cases


CASES += bound_cases()


def record_cases():
    """Flat records (a dict of str keys, scalars and numpy.ndarray arrays, as the encoder writes
    them) one step past what the validator's one-pass proof of them (record.rs) and the machine
    accept: each must be refused, by the machine, with its reason."""
    cases = []

    def add(name, note, reason, data, buffers=()):
        cases.append((name, note, reason, data, list(buffers)))

    def record(arr, head=su("seq") + I(7)):
        return P(5) + EMPTY_DICT + MARK + head + su("adc") + arr + SETITEMS + STOP

    def ndarray(shape, dtype="<i2", cls=None, tail=I(0) + NONE + su("C")):
        return (cls if cls is not None else sg("numpy", "ndarray") + MEMO) + MARK + shape + su(dtype) + NB + tail \
            + TUPLE + NEWOBJ

    two = I(2) + I(2) + T2
    add("h149_record_array_past_its_buffer", "flat record, int16 (2, 2) over a 7-byte buffer",
        "array bytes do not fit its buffer", record(ndarray(two)), [7])
    add("h150_record_class_from_empty_memo", "flat record whose first array takes numpy.ndarray from an empty memo",
        "memo read of an empty slot", record(ndarray(two, cls=BG(0))), [8])
    add("h151_record_negative_dimension", "flat record, shape (2, -2) spelled with BININT",
        "array shape is not a tuple of non-negative ints",
        record(ndarray(I(2) + b"J\xfe\xff\xff\xff" + T2)), [8])
    add("h152_record_dimension_past_i64", "flat record, a 9-byte LONG1 dimension (2**64 + 2)",
        "array shape is not a tuple of non-negative ints",
        record(ndarray(I(2) + b"\x8a\x09\x02\x00\x00\x00\x00\x00\x00\x00\x01" + T2)), [8])
    add("h153_record_shape_overflow", "flat record, shape (2**62, 2**62): elements x itemsize overflow",
        "array shape x itemsize overflows", record(ndarray(I(2**62) + I(2**62) + T2)), [8])
    add("h154_record_unknown_dtype", "flat record, dtype '<i3'",
        "numpy dtype not in the allowlist", record(ndarray(two, dtype="<i3")), [8])
    add("h155_record_unused_buffer", "flat record with two out-of-band buffers and one NEXT_BUFFER",
        "fewer NEXT_BUFFER than out-of-band buffers", record(ndarray(two)), [8, 8])
    add("h156_record_order_x", "flat record, order 'X'", "array order is not 'C' or 'F'",
        record(ndarray(two, tail=I(0) + NONE + su("X"))), [8])
    add("h157_record_no_stop", "flat record without its STOP", "pickle has no STOP",
        record(ndarray(two))[:-1], [8])
    add("h158_record_key_without_value", "SETITEMS over a key, a value and a key", "SETITEMS with a key but no value",
        P(5) + EMPTY_DICT + MARK + su("seq") + I(7) + su("adc") + SETITEMS + STOP)
    return cases


CASES += record_cases()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    os.makedirs(out, exist_ok=True)
    manifest = []
    for name, note, reason, data, buffers in CASES:
        with open(os.path.join(out, name + ".pkl"), "wb") as f:
            f.write(data)
        for i, n in enumerate(buffers):
            with open(os.path.join(out, "%s.buf%d" % (name, i)), "wb") as f:
                f.write(bytes(range(256)) * (n // 256) + bytes(range(n % 256)))
        manifest.append({"name": name, "note": note, "reason": reason, "expect": "reject"})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("wrote %d hostile cases to %s" % (len(CASES), out))


if __name__ == "__main__":
    main()

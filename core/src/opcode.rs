//! Pickle opcodes of protocols 0 to 5, as CPython's `pickletools` lists them.
//!
//! The byte constants are what the [`Pickler`](crate::Pickler) writes; [`Opcode`] with its
//! [`Arg`] kind is what the reader decodes. The table is generated from `pickletools.opcodes`
//! (CPython 3.11), so names, argument kinds and protocols match the reference disassembler.

/// `INT` (protocol 0).
pub const INT: u8 = 0x49;
/// `BININT` (protocol 1).
pub const BININT: u8 = 0x4a;
/// `BININT1` (protocol 1).
pub const BININT1: u8 = 0x4b;
/// `BININT2` (protocol 1).
pub const BININT2: u8 = 0x4d;
/// `LONG` (protocol 0).
pub const LONG: u8 = 0x4c;
/// `LONG1` (protocol 2).
pub const LONG1: u8 = 0x8a;
/// `LONG4` (protocol 2).
pub const LONG4: u8 = 0x8b;
/// `STRING` (protocol 0).
pub const STRING: u8 = 0x53;
/// `BINSTRING` (protocol 1).
pub const BINSTRING: u8 = 0x54;
/// `SHORT_BINSTRING` (protocol 1).
pub const SHORT_BINSTRING: u8 = 0x55;
/// `BINBYTES` (protocol 3).
pub const BINBYTES: u8 = 0x42;
/// `SHORT_BINBYTES` (protocol 3).
pub const SHORT_BINBYTES: u8 = 0x43;
/// `BINBYTES8` (protocol 4).
pub const BINBYTES8: u8 = 0x8e;
/// `BYTEARRAY8` (protocol 5).
pub const BYTEARRAY8: u8 = 0x96;
/// `NEXT_BUFFER` (protocol 5).
pub const NEXT_BUFFER: u8 = 0x97;
/// `READONLY_BUFFER` (protocol 5).
pub const READONLY_BUFFER: u8 = 0x98;
/// `NONE` (protocol 0).
pub const NONE: u8 = 0x4e;
/// `NEWTRUE` (protocol 2).
pub const NEWTRUE: u8 = 0x88;
/// `NEWFALSE` (protocol 2).
pub const NEWFALSE: u8 = 0x89;
/// `UNICODE` (protocol 0).
pub const UNICODE: u8 = 0x56;
/// `SHORT_BINUNICODE` (protocol 4).
pub const SHORT_BINUNICODE: u8 = 0x8c;
/// `BINUNICODE` (protocol 1).
pub const BINUNICODE: u8 = 0x58;
/// `BINUNICODE8` (protocol 4).
pub const BINUNICODE8: u8 = 0x8d;
/// `FLOAT` (protocol 0).
pub const FLOAT: u8 = 0x46;
/// `BINFLOAT` (protocol 1).
pub const BINFLOAT: u8 = 0x47;
/// `EMPTY_LIST` (protocol 1).
pub const EMPTY_LIST: u8 = 0x5d;
/// `APPEND` (protocol 0).
pub const APPEND: u8 = 0x61;
/// `APPENDS` (protocol 1).
pub const APPENDS: u8 = 0x65;
/// `LIST` (protocol 0).
pub const LIST: u8 = 0x6c;
/// `EMPTY_TUPLE` (protocol 1).
pub const EMPTY_TUPLE: u8 = 0x29;
/// `TUPLE` (protocol 0).
pub const TUPLE: u8 = 0x74;
/// `TUPLE1` (protocol 2).
pub const TUPLE1: u8 = 0x85;
/// `TUPLE2` (protocol 2).
pub const TUPLE2: u8 = 0x86;
/// `TUPLE3` (protocol 2).
pub const TUPLE3: u8 = 0x87;
/// `EMPTY_DICT` (protocol 1).
pub const EMPTY_DICT: u8 = 0x7d;
/// `DICT` (protocol 0).
pub const DICT: u8 = 0x64;
/// `SETITEM` (protocol 0).
pub const SETITEM: u8 = 0x73;
/// `SETITEMS` (protocol 1).
pub const SETITEMS: u8 = 0x75;
/// `EMPTY_SET` (protocol 4).
pub const EMPTY_SET: u8 = 0x8f;
/// `ADDITEMS` (protocol 4).
pub const ADDITEMS: u8 = 0x90;
/// `FROZENSET` (protocol 4).
pub const FROZENSET: u8 = 0x91;
/// `POP` (protocol 0).
pub const POP: u8 = 0x30;
/// `DUP` (protocol 0).
pub const DUP: u8 = 0x32;
/// `MARK` (protocol 0).
pub const MARK: u8 = 0x28;
/// `POP_MARK` (protocol 1).
pub const POP_MARK: u8 = 0x31;
/// `GET` (protocol 0).
pub const GET: u8 = 0x67;
/// `BINGET` (protocol 1).
pub const BINGET: u8 = 0x68;
/// `LONG_BINGET` (protocol 1).
pub const LONG_BINGET: u8 = 0x6a;
/// `PUT` (protocol 0).
pub const PUT: u8 = 0x70;
/// `BINPUT` (protocol 1).
pub const BINPUT: u8 = 0x71;
/// `LONG_BINPUT` (protocol 1).
pub const LONG_BINPUT: u8 = 0x72;
/// `MEMOIZE` (protocol 4).
pub const MEMOIZE: u8 = 0x94;
/// `EXT1` (protocol 2).
pub const EXT1: u8 = 0x82;
/// `EXT2` (protocol 2).
pub const EXT2: u8 = 0x83;
/// `EXT4` (protocol 2).
pub const EXT4: u8 = 0x84;
/// `GLOBAL` (protocol 0).
pub const GLOBAL: u8 = 0x63;
/// `STACK_GLOBAL` (protocol 4).
pub const STACK_GLOBAL: u8 = 0x93;
/// `REDUCE` (protocol 0).
pub const REDUCE: u8 = 0x52;
/// `BUILD` (protocol 0).
pub const BUILD: u8 = 0x62;
/// `INST` (protocol 0).
pub const INST: u8 = 0x69;
/// `OBJ` (protocol 1).
pub const OBJ: u8 = 0x6f;
/// `NEWOBJ` (protocol 2).
pub const NEWOBJ: u8 = 0x81;
/// `NEWOBJ_EX` (protocol 4).
pub const NEWOBJ_EX: u8 = 0x92;
/// `PROTO` (protocol 2).
pub const PROTO: u8 = 0x80;
/// `STOP` (protocol 0).
pub const STOP: u8 = 0x2e;
/// `FRAME` (protocol 4).
pub const FRAME: u8 = 0x95;
/// `PERSID` (protocol 0).
pub const PERSID: u8 = 0x50;
/// `BINPERSID` (protocol 1).
pub const BINPERSID: u8 = 0x51;

/// How an opcode's argument is laid out after the opcode byte (`pickletools` argument names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Arg {
    /// No argument.
    None,
    /// `decimalnl_short`.
    DecimalNlShort,
    /// `decimalnl_long`.
    DecimalNlLong,
    /// `int4`.
    Int4,
    /// `uint1`.
    Uint1,
    /// `uint2`.
    Uint2,
    /// `uint4`.
    Uint4,
    /// `uint8`.
    Uint8,
    /// `long1`.
    Long1,
    /// `long4`.
    Long4,
    /// `stringnl`.
    StringNl,
    /// `string4`.
    String4,
    /// `string1`.
    String1,
    /// `bytes4`.
    Bytes4,
    /// `bytes1`.
    Bytes1,
    /// `bytes8`.
    Bytes8,
    /// `bytearray8`.
    Bytearray8,
    /// `unicodestringnl`.
    UnicodeStringNl,
    /// `unicodestring1`.
    UnicodeString1,
    /// `unicodestring4`.
    UnicodeString4,
    /// `unicodestring8`.
    UnicodeString8,
    /// `floatnl`.
    FloatNl,
    /// `float8`.
    Float8,
    /// `stringnl_noescape_pair`.
    StringNlNoescapePair,
    /// `stringnl_noescape`.
    StringNlNoescape,
}

/// A pickle opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Opcode {
    /// `INT` = `'I'`, protocol 0.
    Int = INT,
    /// `BININT` = `'J'`, protocol 1.
    Binint = BININT,
    /// `BININT1` = `'K'`, protocol 1.
    Binint1 = BININT1,
    /// `BININT2` = `'M'`, protocol 1.
    Binint2 = BININT2,
    /// `LONG` = `'L'`, protocol 0.
    Long = LONG,
    /// `LONG1` = `'\x8a'`, protocol 2.
    Long1 = LONG1,
    /// `LONG4` = `'\x8b'`, protocol 2.
    Long4 = LONG4,
    /// `STRING` = `'S'`, protocol 0.
    String = STRING,
    /// `BINSTRING` = `'T'`, protocol 1.
    Binstring = BINSTRING,
    /// `SHORT_BINSTRING` = `'U'`, protocol 1.
    ShortBinstring = SHORT_BINSTRING,
    /// `BINBYTES` = `'B'`, protocol 3.
    Binbytes = BINBYTES,
    /// `SHORT_BINBYTES` = `'C'`, protocol 3.
    ShortBinbytes = SHORT_BINBYTES,
    /// `BINBYTES8` = `'\x8e'`, protocol 4.
    Binbytes8 = BINBYTES8,
    /// `BYTEARRAY8` = `'\x96'`, protocol 5.
    Bytearray8 = BYTEARRAY8,
    /// `NEXT_BUFFER` = `'\x97'`, protocol 5.
    NextBuffer = NEXT_BUFFER,
    /// `READONLY_BUFFER` = `'\x98'`, protocol 5.
    ReadonlyBuffer = READONLY_BUFFER,
    /// `NONE` = `'N'`, protocol 0.
    None = NONE,
    /// `NEWTRUE` = `'\x88'`, protocol 2.
    Newtrue = NEWTRUE,
    /// `NEWFALSE` = `'\x89'`, protocol 2.
    Newfalse = NEWFALSE,
    /// `UNICODE` = `'V'`, protocol 0.
    Unicode = UNICODE,
    /// `SHORT_BINUNICODE` = `'\x8c'`, protocol 4.
    ShortBinunicode = SHORT_BINUNICODE,
    /// `BINUNICODE` = `'X'`, protocol 1.
    Binunicode = BINUNICODE,
    /// `BINUNICODE8` = `'\x8d'`, protocol 4.
    Binunicode8 = BINUNICODE8,
    /// `FLOAT` = `'F'`, protocol 0.
    Float = FLOAT,
    /// `BINFLOAT` = `'G'`, protocol 1.
    Binfloat = BINFLOAT,
    /// `EMPTY_LIST` = `']'`, protocol 1.
    EmptyList = EMPTY_LIST,
    /// `APPEND` = `'a'`, protocol 0.
    Append = APPEND,
    /// `APPENDS` = `'e'`, protocol 1.
    Appends = APPENDS,
    /// `LIST` = `'l'`, protocol 0.
    List = LIST,
    /// `EMPTY_TUPLE` = `')'`, protocol 1.
    EmptyTuple = EMPTY_TUPLE,
    /// `TUPLE` = `'t'`, protocol 0.
    Tuple = TUPLE,
    /// `TUPLE1` = `'\x85'`, protocol 2.
    Tuple1 = TUPLE1,
    /// `TUPLE2` = `'\x86'`, protocol 2.
    Tuple2 = TUPLE2,
    /// `TUPLE3` = `'\x87'`, protocol 2.
    Tuple3 = TUPLE3,
    /// `EMPTY_DICT` = `'}'`, protocol 1.
    EmptyDict = EMPTY_DICT,
    /// `DICT` = `'d'`, protocol 0.
    Dict = DICT,
    /// `SETITEM` = `'s'`, protocol 0.
    Setitem = SETITEM,
    /// `SETITEMS` = `'u'`, protocol 1.
    Setitems = SETITEMS,
    /// `EMPTY_SET` = `'\x8f'`, protocol 4.
    EmptySet = EMPTY_SET,
    /// `ADDITEMS` = `'\x90'`, protocol 4.
    Additems = ADDITEMS,
    /// `FROZENSET` = `'\x91'`, protocol 4.
    Frozenset = FROZENSET,
    /// `POP` = `'0'`, protocol 0.
    Pop = POP,
    /// `DUP` = `'2'`, protocol 0.
    Dup = DUP,
    /// `MARK` = `'('`, protocol 0.
    Mark = MARK,
    /// `POP_MARK` = `'1'`, protocol 1.
    PopMark = POP_MARK,
    /// `GET` = `'g'`, protocol 0.
    Get = GET,
    /// `BINGET` = `'h'`, protocol 1.
    Binget = BINGET,
    /// `LONG_BINGET` = `'j'`, protocol 1.
    LongBinget = LONG_BINGET,
    /// `PUT` = `'p'`, protocol 0.
    Put = PUT,
    /// `BINPUT` = `'q'`, protocol 1.
    Binput = BINPUT,
    /// `LONG_BINPUT` = `'r'`, protocol 1.
    LongBinput = LONG_BINPUT,
    /// `MEMOIZE` = `'\x94'`, protocol 4.
    Memoize = MEMOIZE,
    /// `EXT1` = `'\x82'`, protocol 2.
    Ext1 = EXT1,
    /// `EXT2` = `'\x83'`, protocol 2.
    Ext2 = EXT2,
    /// `EXT4` = `'\x84'`, protocol 2.
    Ext4 = EXT4,
    /// `GLOBAL` = `'c'`, protocol 0.
    Global = GLOBAL,
    /// `STACK_GLOBAL` = `'\x93'`, protocol 4.
    StackGlobal = STACK_GLOBAL,
    /// `REDUCE` = `'R'`, protocol 0.
    Reduce = REDUCE,
    /// `BUILD` = `'b'`, protocol 0.
    Build = BUILD,
    /// `INST` = `'i'`, protocol 0.
    Inst = INST,
    /// `OBJ` = `'o'`, protocol 1.
    Obj = OBJ,
    /// `NEWOBJ` = `'\x81'`, protocol 2.
    Newobj = NEWOBJ,
    /// `NEWOBJ_EX` = `'\x92'`, protocol 4.
    NewobjEx = NEWOBJ_EX,
    /// `PROTO` = `'\x80'`, protocol 2.
    Proto = PROTO,
    /// `STOP` = `'.'`, protocol 0.
    Stop = STOP,
    /// `FRAME` = `'\x95'`, protocol 4.
    Frame = FRAME,
    /// `PERSID` = `'P'`, protocol 0.
    Persid = PERSID,
    /// `BINPERSID` = `'Q'`, protocol 1.
    Binpersid = BINPERSID,
}

impl Opcode {
    /// The opcode for a byte, or `None` if no protocol defines it.
    ///
    /// ```
    /// use dmapickle_core::opcode::{Opcode, NEXT_BUFFER};
    /// assert_eq!(Opcode::from_byte(NEXT_BUFFER), Some(Opcode::NextBuffer));
    /// assert_eq!(Opcode::from_byte(0xff), None);
    /// ```
    #[inline]
    #[allow(clippy::indexing_slicing)] // a u8 indexes a 256-entry table
    pub const fn from_byte(byte: u8) -> Option<Opcode> {
        BY_BYTE[byte as usize]
    }

    /// [`from_byte`](Opcode::from_byte) as a match: the source of its table.
    const fn decode(byte: u8) -> Option<Opcode> {
        Some(match byte {
            INT => Opcode::Int,
            BININT => Opcode::Binint,
            BININT1 => Opcode::Binint1,
            BININT2 => Opcode::Binint2,
            LONG => Opcode::Long,
            LONG1 => Opcode::Long1,
            LONG4 => Opcode::Long4,
            STRING => Opcode::String,
            BINSTRING => Opcode::Binstring,
            SHORT_BINSTRING => Opcode::ShortBinstring,
            BINBYTES => Opcode::Binbytes,
            SHORT_BINBYTES => Opcode::ShortBinbytes,
            BINBYTES8 => Opcode::Binbytes8,
            BYTEARRAY8 => Opcode::Bytearray8,
            NEXT_BUFFER => Opcode::NextBuffer,
            READONLY_BUFFER => Opcode::ReadonlyBuffer,
            NONE => Opcode::None,
            NEWTRUE => Opcode::Newtrue,
            NEWFALSE => Opcode::Newfalse,
            UNICODE => Opcode::Unicode,
            SHORT_BINUNICODE => Opcode::ShortBinunicode,
            BINUNICODE => Opcode::Binunicode,
            BINUNICODE8 => Opcode::Binunicode8,
            FLOAT => Opcode::Float,
            BINFLOAT => Opcode::Binfloat,
            EMPTY_LIST => Opcode::EmptyList,
            APPEND => Opcode::Append,
            APPENDS => Opcode::Appends,
            LIST => Opcode::List,
            EMPTY_TUPLE => Opcode::EmptyTuple,
            TUPLE => Opcode::Tuple,
            TUPLE1 => Opcode::Tuple1,
            TUPLE2 => Opcode::Tuple2,
            TUPLE3 => Opcode::Tuple3,
            EMPTY_DICT => Opcode::EmptyDict,
            DICT => Opcode::Dict,
            SETITEM => Opcode::Setitem,
            SETITEMS => Opcode::Setitems,
            EMPTY_SET => Opcode::EmptySet,
            ADDITEMS => Opcode::Additems,
            FROZENSET => Opcode::Frozenset,
            POP => Opcode::Pop,
            DUP => Opcode::Dup,
            MARK => Opcode::Mark,
            POP_MARK => Opcode::PopMark,
            GET => Opcode::Get,
            BINGET => Opcode::Binget,
            LONG_BINGET => Opcode::LongBinget,
            PUT => Opcode::Put,
            BINPUT => Opcode::Binput,
            LONG_BINPUT => Opcode::LongBinput,
            MEMOIZE => Opcode::Memoize,
            EXT1 => Opcode::Ext1,
            EXT2 => Opcode::Ext2,
            EXT4 => Opcode::Ext4,
            GLOBAL => Opcode::Global,
            STACK_GLOBAL => Opcode::StackGlobal,
            REDUCE => Opcode::Reduce,
            BUILD => Opcode::Build,
            INST => Opcode::Inst,
            OBJ => Opcode::Obj,
            NEWOBJ => Opcode::Newobj,
            NEWOBJ_EX => Opcode::NewobjEx,
            PROTO => Opcode::Proto,
            STOP => Opcode::Stop,
            FRAME => Opcode::Frame,
            PERSID => Opcode::Persid,
            BINPERSID => Opcode::Binpersid,
            _ => return None,
        })
    }

    /// The byte this opcode is written as.
    pub const fn byte(self) -> u8 {
        self as u8
    }

    /// The name `pickletools.dis` prints, e.g. `"SHORT_BINUNICODE"`.
    pub const fn name(self) -> &'static str {
        match self {
            Opcode::Int => "INT",
            Opcode::Binint => "BININT",
            Opcode::Binint1 => "BININT1",
            Opcode::Binint2 => "BININT2",
            Opcode::Long => "LONG",
            Opcode::Long1 => "LONG1",
            Opcode::Long4 => "LONG4",
            Opcode::String => "STRING",
            Opcode::Binstring => "BINSTRING",
            Opcode::ShortBinstring => "SHORT_BINSTRING",
            Opcode::Binbytes => "BINBYTES",
            Opcode::ShortBinbytes => "SHORT_BINBYTES",
            Opcode::Binbytes8 => "BINBYTES8",
            Opcode::Bytearray8 => "BYTEARRAY8",
            Opcode::NextBuffer => "NEXT_BUFFER",
            Opcode::ReadonlyBuffer => "READONLY_BUFFER",
            Opcode::None => "NONE",
            Opcode::Newtrue => "NEWTRUE",
            Opcode::Newfalse => "NEWFALSE",
            Opcode::Unicode => "UNICODE",
            Opcode::ShortBinunicode => "SHORT_BINUNICODE",
            Opcode::Binunicode => "BINUNICODE",
            Opcode::Binunicode8 => "BINUNICODE8",
            Opcode::Float => "FLOAT",
            Opcode::Binfloat => "BINFLOAT",
            Opcode::EmptyList => "EMPTY_LIST",
            Opcode::Append => "APPEND",
            Opcode::Appends => "APPENDS",
            Opcode::List => "LIST",
            Opcode::EmptyTuple => "EMPTY_TUPLE",
            Opcode::Tuple => "TUPLE",
            Opcode::Tuple1 => "TUPLE1",
            Opcode::Tuple2 => "TUPLE2",
            Opcode::Tuple3 => "TUPLE3",
            Opcode::EmptyDict => "EMPTY_DICT",
            Opcode::Dict => "DICT",
            Opcode::Setitem => "SETITEM",
            Opcode::Setitems => "SETITEMS",
            Opcode::EmptySet => "EMPTY_SET",
            Opcode::Additems => "ADDITEMS",
            Opcode::Frozenset => "FROZENSET",
            Opcode::Pop => "POP",
            Opcode::Dup => "DUP",
            Opcode::Mark => "MARK",
            Opcode::PopMark => "POP_MARK",
            Opcode::Get => "GET",
            Opcode::Binget => "BINGET",
            Opcode::LongBinget => "LONG_BINGET",
            Opcode::Put => "PUT",
            Opcode::Binput => "BINPUT",
            Opcode::LongBinput => "LONG_BINPUT",
            Opcode::Memoize => "MEMOIZE",
            Opcode::Ext1 => "EXT1",
            Opcode::Ext2 => "EXT2",
            Opcode::Ext4 => "EXT4",
            Opcode::Global => "GLOBAL",
            Opcode::StackGlobal => "STACK_GLOBAL",
            Opcode::Reduce => "REDUCE",
            Opcode::Build => "BUILD",
            Opcode::Inst => "INST",
            Opcode::Obj => "OBJ",
            Opcode::Newobj => "NEWOBJ",
            Opcode::NewobjEx => "NEWOBJ_EX",
            Opcode::Proto => "PROTO",
            Opcode::Stop => "STOP",
            Opcode::Frame => "FRAME",
            Opcode::Persid => "PERSID",
            Opcode::Binpersid => "BINPERSID",
        }
    }

    /// The layout of the argument that follows the opcode byte.
    #[inline]
    #[allow(clippy::indexing_slicing)] // a u8 indexes a 256-entry table
    pub const fn arg(self) -> Arg {
        ARGS[self as usize]
    }

    /// [`arg`](Opcode::arg) as a match: the source of its table.
    const fn arg_of(self) -> Arg {
        match self {
            Opcode::Int => Arg::DecimalNlShort,
            Opcode::Binint => Arg::Int4,
            Opcode::Binint1 => Arg::Uint1,
            Opcode::Binint2 => Arg::Uint2,
            Opcode::Long => Arg::DecimalNlLong,
            Opcode::Long1 => Arg::Long1,
            Opcode::Long4 => Arg::Long4,
            Opcode::String => Arg::StringNl,
            Opcode::Binstring => Arg::String4,
            Opcode::ShortBinstring => Arg::String1,
            Opcode::Binbytes => Arg::Bytes4,
            Opcode::ShortBinbytes => Arg::Bytes1,
            Opcode::Binbytes8 => Arg::Bytes8,
            Opcode::Bytearray8 => Arg::Bytearray8,
            Opcode::NextBuffer => Arg::None,
            Opcode::ReadonlyBuffer => Arg::None,
            Opcode::None => Arg::None,
            Opcode::Newtrue => Arg::None,
            Opcode::Newfalse => Arg::None,
            Opcode::Unicode => Arg::UnicodeStringNl,
            Opcode::ShortBinunicode => Arg::UnicodeString1,
            Opcode::Binunicode => Arg::UnicodeString4,
            Opcode::Binunicode8 => Arg::UnicodeString8,
            Opcode::Float => Arg::FloatNl,
            Opcode::Binfloat => Arg::Float8,
            Opcode::EmptyList => Arg::None,
            Opcode::Append => Arg::None,
            Opcode::Appends => Arg::None,
            Opcode::List => Arg::None,
            Opcode::EmptyTuple => Arg::None,
            Opcode::Tuple => Arg::None,
            Opcode::Tuple1 => Arg::None,
            Opcode::Tuple2 => Arg::None,
            Opcode::Tuple3 => Arg::None,
            Opcode::EmptyDict => Arg::None,
            Opcode::Dict => Arg::None,
            Opcode::Setitem => Arg::None,
            Opcode::Setitems => Arg::None,
            Opcode::EmptySet => Arg::None,
            Opcode::Additems => Arg::None,
            Opcode::Frozenset => Arg::None,
            Opcode::Pop => Arg::None,
            Opcode::Dup => Arg::None,
            Opcode::Mark => Arg::None,
            Opcode::PopMark => Arg::None,
            Opcode::Get => Arg::DecimalNlShort,
            Opcode::Binget => Arg::Uint1,
            Opcode::LongBinget => Arg::Uint4,
            Opcode::Put => Arg::DecimalNlShort,
            Opcode::Binput => Arg::Uint1,
            Opcode::LongBinput => Arg::Uint4,
            Opcode::Memoize => Arg::None,
            Opcode::Ext1 => Arg::Uint1,
            Opcode::Ext2 => Arg::Uint2,
            Opcode::Ext4 => Arg::Int4,
            Opcode::Global => Arg::StringNlNoescapePair,
            Opcode::StackGlobal => Arg::None,
            Opcode::Reduce => Arg::None,
            Opcode::Build => Arg::None,
            Opcode::Inst => Arg::StringNlNoescapePair,
            Opcode::Obj => Arg::None,
            Opcode::Newobj => Arg::None,
            Opcode::NewobjEx => Arg::None,
            Opcode::Proto => Arg::Uint1,
            Opcode::Stop => Arg::None,
            Opcode::Frame => Arg::Uint8,
            Opcode::Persid => Arg::StringNlNoescape,
            Opcode::Binpersid => Arg::None,
        }
    }

    /// The first protocol that defines this opcode.
    #[inline]
    #[allow(clippy::indexing_slicing)] // a u8 indexes a 256-entry table
    pub const fn protocol(self) -> u8 {
        PROTOCOLS[self as usize]
    }

    /// [`protocol`](Opcode::protocol) as a match: the source of its table.
    const fn protocol_of(self) -> u8 {
        match self {
            Opcode::Int => 0,
            Opcode::Binint => 1,
            Opcode::Binint1 => 1,
            Opcode::Binint2 => 1,
            Opcode::Long => 0,
            Opcode::Long1 => 2,
            Opcode::Long4 => 2,
            Opcode::String => 0,
            Opcode::Binstring => 1,
            Opcode::ShortBinstring => 1,
            Opcode::Binbytes => 3,
            Opcode::ShortBinbytes => 3,
            Opcode::Binbytes8 => 4,
            Opcode::Bytearray8 => 5,
            Opcode::NextBuffer => 5,
            Opcode::ReadonlyBuffer => 5,
            Opcode::None => 0,
            Opcode::Newtrue => 2,
            Opcode::Newfalse => 2,
            Opcode::Unicode => 0,
            Opcode::ShortBinunicode => 4,
            Opcode::Binunicode => 1,
            Opcode::Binunicode8 => 4,
            Opcode::Float => 0,
            Opcode::Binfloat => 1,
            Opcode::EmptyList => 1,
            Opcode::Append => 0,
            Opcode::Appends => 1,
            Opcode::List => 0,
            Opcode::EmptyTuple => 1,
            Opcode::Tuple => 0,
            Opcode::Tuple1 => 2,
            Opcode::Tuple2 => 2,
            Opcode::Tuple3 => 2,
            Opcode::EmptyDict => 1,
            Opcode::Dict => 0,
            Opcode::Setitem => 0,
            Opcode::Setitems => 1,
            Opcode::EmptySet => 4,
            Opcode::Additems => 4,
            Opcode::Frozenset => 4,
            Opcode::Pop => 0,
            Opcode::Dup => 0,
            Opcode::Mark => 0,
            Opcode::PopMark => 1,
            Opcode::Get => 0,
            Opcode::Binget => 1,
            Opcode::LongBinget => 1,
            Opcode::Put => 0,
            Opcode::Binput => 1,
            Opcode::LongBinput => 1,
            Opcode::Memoize => 4,
            Opcode::Ext1 => 2,
            Opcode::Ext2 => 2,
            Opcode::Ext4 => 2,
            Opcode::Global => 0,
            Opcode::StackGlobal => 4,
            Opcode::Reduce => 0,
            Opcode::Build => 0,
            Opcode::Inst => 0,
            Opcode::Obj => 1,
            Opcode::Newobj => 2,
            Opcode::NewobjEx => 4,
            Opcode::Proto => 2,
            Opcode::Stop => 0,
            Opcode::Frame => 4,
            Opcode::Persid => 0,
            Opcode::Binpersid => 1,
        }
    }
}

// The reader looks each opcode byte up three times (is it an opcode, its argument, its
// protocol): tables built at compile time from the matches above make each one load instead of a
// call and a jump table.
macro_rules! by_byte {
    ($default:expr, $op:ident => $value:expr) => {{
        let mut table = [$default; 256];
        let mut i = 0;
        while i < 256 {
            if let Some($op) = Opcode::decode(i as u8) {
                table[i] = $value;
            }
            i += 1;
        }
        table
    }};
}

#[allow(clippy::indexing_slicing)] // i < 256
const BY_BYTE: [Option<Opcode>; 256] = by_byte!(None, op => Some(op));
#[allow(clippy::indexing_slicing)] // i < 256
const ARGS: [Arg; 256] = by_byte!(Arg::None, op => op.arg_of());
#[allow(clippy::indexing_slicing)] // i < 256
const PROTOCOLS: [u8; 256] = by_byte!(0, op => op.protocol_of());

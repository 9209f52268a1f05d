//! Cross-language property test: Rust encodes thousands of generated values, CPython loads them.
//!
//! proptest generates values (nested containers, ints of every width with their edges, floats
//! with inf/nan/-0.0, unicode, bytes, sets of hashables, numpy arrays of every dtype, byte order,
//! dimension count and memory order, read-only and writable, plain out-of-band buffers). Each is
//! encoded with the `Pickler`, and described as JSON independently of the pickle. The whole batch
//! goes to ONE Python process per numpy version (`tests/python/check_encoded.py`), which loads
//! every pickle with `pickle.loads(data, buffers=...)` and checks it against its description.
//!
//! Python: `DMAPICKLE_PYTHON` (numpy 2.x) and `DMAPICKLE_PYTHON_NP1` (numpy 1.26), else the repo's
//! `.venv/np2` and `.venv/np1`; missing interpreters fail the test ("run scripts/setup.sh").
//! `DMAPICKLE_SEED` picks another generation seed (default: fixed, so failures reproduce).
//!
//! A second, Rust-only test checks the all-or-nothing error contract over generated values.

use std::fmt::Write as _;
use std::path::Path;

use dmapickle_core::ndarray::{ByteOrder, DType, Order, Scalar};
use dmapickle_core::{Container, Descriptor, EncodeError, Pickler};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value as Json};

mod support;
use support::{python, run_checker, Batch, PYTHONS};

/// Descriptor table capacity for the generated values (they have far fewer buffers).
const BUFFERS: usize = 512;
/// Generated values per run.
const CASES: usize = 3000;

#[derive(Debug, Clone, Copy)]
enum Int {
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    I128(i128),
    Isize(isize),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    U128(u128),
    Usize(usize),
}

#[derive(Debug, Clone)]
enum V {
    None,
    Bool(bool),
    Int(Int),
    F64(f64),
    F32(f32),
    Complex(f64, f64),
    Str(String),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
    Tuple(Vec<V>),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    Set(Vec<V>),
    FrozenSet(Vec<V>),
    Buffer {
        data: Vec<u8>,
        readonly: bool,
    },
    Array {
        dtype: DType,
        shape: Vec<usize>,
        order: Order,
        data: Vec<u8>,
        readonly: bool,
    },
}

// ---- strategies ---------------------------------------------------------------------------------

fn int() -> impl Strategy<Value = Int> {
    let edges = prop::sample::select(vec![
        Int::I8(i8::MIN),
        Int::I8(i8::MAX),
        Int::I16(i16::MIN),
        Int::U16(u16::MAX),
        Int::I32(i32::MIN),
        Int::I32(i32::MAX),
        Int::U32(1 << 31),
        Int::U32(u32::MAX),
        Int::I64(i64::MIN),
        Int::I64(i64::MAX),
        Int::I64(-(1 << 31) - 1),
        Int::U64(u64::MAX),
        Int::U64(1 << 63),
        Int::I128(i128::MIN),
        Int::I128(i128::MAX),
        Int::I128(-(1 << 39)),
        Int::U128(u128::MAX),
        Int::U8(0),
        Int::U8(255),
        Int::U16(256),
        Int::U32(65536),
        Int::Isize(isize::MIN),
        Int::Usize(usize::MAX),
    ]);
    prop_oneof![
        edges,
        any::<i8>().prop_map(Int::I8),
        any::<i16>().prop_map(Int::I16),
        any::<i32>().prop_map(Int::I32),
        any::<i64>().prop_map(Int::I64),
        any::<i128>().prop_map(Int::I128),
        any::<isize>().prop_map(Int::Isize),
        any::<u8>().prop_map(Int::U8),
        any::<u16>().prop_map(Int::U16),
        any::<u32>().prop_map(Int::U32),
        any::<u64>().prop_map(Int::U64),
        any::<u128>().prop_map(Int::U128),
        any::<usize>().prop_map(Int::Usize),
        (-70_000i64..70_000).prop_map(Int::I64),
        // Around the LONG1 byte-length boundaries: +-2^k +- 1.
        (0u32..127, -1i128..=1, any::<bool>()).prop_map(|(k, d, neg)| {
            let v = (1i128 << k) + d;
            Int::I128(if neg { -v } else { v })
        }),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        any::<u64>().prop_map(f64::from_bits),
        prop::sample::select(vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::MIN_POSITIVE,
            f64::MAX,
            5e-324,
        ]),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        1 => prop::collection::vec(any::<char>(), 60..140).prop_map(String::from_iter),
        1 => "[a-z]{250,300}",
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..16),
        1 => prop::collection::vec(any::<u8>(), 250..300),
    ]
}

/// Values Python can put in a set or use as a dict key (no floats: NaN breaks set equality).
fn hashable() -> impl Strategy<Value = V> {
    let leaf = prop_oneof![
        Just(V::None),
        any::<bool>().prop_map(V::Bool),
        int().prop_map(V::Int),
        text().prop_map(V::Str),
        bytes().prop_map(V::Bytes),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(V::Tuple),
            prop::collection::vec(inner, 0..5).prop_map(V::FrozenSet),
        ]
    })
}

fn array() -> impl Strategy<Value = V> {
    let dtype = (
        prop::sample::select(Scalar::ALL.to_vec()),
        prop_oneof![Just(ByteOrder::Little), Just(ByteOrder::Big)],
    )
        .prop_map(|(scalar, order)| DType::new(scalar, order));
    let shape = prop_oneof![
        4 => prop::collection::vec(0usize..5, 0..=4),
        1 => prop::collection::vec(1usize..3, 5..=8),
        1 => (1usize..300).prop_map(|n| vec![n]),
    ];
    let order = prop_oneof![Just(Order::C), Just(Order::Fortran)];
    (dtype, shape, order, any::<bool>()).prop_flat_map(|(dtype, shape, order, readonly)| {
        let len = shape.iter().product::<usize>() * dtype.itemsize();
        let is_bool = dtype.scalar() == Scalar::Bool;
        prop::collection::vec(any::<u8>(), len).prop_map(move |mut data| {
            if is_bool {
                data.iter_mut().for_each(|b| *b &= 1);
            }
            V::Array {
                dtype,
                shape: shape.clone(),
                order,
                data,
                readonly,
            }
        })
    })
}

fn value() -> impl Strategy<Value = V> {
    let leaf = prop_oneof![
        1 => Just(V::None),
        1 => any::<bool>().prop_map(V::Bool),
        3 => int().prop_map(V::Int),
        2 => float().prop_map(V::F64),
        1 => any::<f32>().prop_map(V::F32),
        1 => any::<u32>().prop_map(|bits| V::F32(f32::from_bits(bits))),
        1 => (float(), float()).prop_map(|(re, im)| V::Complex(re, im)),
        2 => text().prop_map(V::Str),
        1 => bytes().prop_map(V::Bytes),
        1 => bytes().prop_map(V::ByteArray),
        1 => (prop::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(data, readonly)| V::Buffer { data, readonly }),
        3 => array(),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(V::Tuple),
            prop::collection::vec(inner.clone(), 0..8).prop_map(V::List),
            prop::collection::vec((hashable(), inner), 0..8).prop_map(V::Dict),
            prop::collection::vec(hashable(), 0..8).prop_map(V::Set),
            prop::collection::vec(hashable(), 0..8).prop_map(V::FrozenSet),
        ]
    })
}

/// Fixed cases proptest rarely reaches: batches of 1000, deep nesting, a big array.
fn fixed_cases() -> Vec<V> {
    let ints = |n: u32| (0..n).map(|i| V::Int(Int::U32(i))).collect::<Vec<_>>();
    let mut deep = V::Int(Int::I8(-1));
    for level in 0..31 {
        deep = match level % 5 {
            0 => V::List(vec![deep]),
            1 => V::Tuple(vec![deep, V::None]),
            2 => V::Dict(vec![(V::Str("k".into()), deep)]),
            3 => V::Tuple(vec![V::None, V::None, V::None, deep]),
            _ => V::List(vec![deep, V::Bool(true)]),
        };
    }
    vec![
        V::List(ints(2500)),
        V::List(ints(1001)),
        V::Dict(ints(1001).into_iter().map(|k| (k, V::None)).collect()),
        V::Set(ints(1500)),
        V::Tuple(ints(1000)),
        V::FrozenSet(ints(1200)),
        deep,
        V::Array {
            dtype: DType::new(Scalar::I16, ByteOrder::Little),
            shape: vec![1024, 4],
            order: Order::C,
            data: (0..8192u32).map(|i| (i * 7) as u8).collect(),
            readonly: true,
        },
    ]
}

// ---- encoding and description -------------------------------------------------------------------

fn encode_int<const N: usize>(p: &mut Pickler<'_, N>, int: Int) -> Result<(), EncodeError> {
    match int {
        Int::I8(v) => p.int(v),
        Int::I16(v) => p.int(v),
        Int::I32(v) => p.int(v),
        Int::I64(v) => p.int(v),
        Int::I128(v) => p.int(v),
        Int::Isize(v) => p.int(v),
        Int::U8(v) => p.int(v),
        Int::U16(v) => p.int(v),
        Int::U32(v) => p.int(v),
        Int::U64(v) => p.int(v),
        Int::U128(v) => p.int(v),
        Int::Usize(v) => p.int(v),
    }
}

fn int_text(int: Int) -> String {
    match int {
        Int::I8(v) => v.to_string(),
        Int::I16(v) => v.to_string(),
        Int::I32(v) => v.to_string(),
        Int::I64(v) => v.to_string(),
        Int::I128(v) => v.to_string(),
        Int::Isize(v) => v.to_string(),
        Int::U8(v) => v.to_string(),
        Int::U16(v) => v.to_string(),
        Int::U32(v) => v.to_string(),
        Int::U64(v) => v.to_string(),
        Int::U128(v) => v.to_string(),
        Int::Usize(v) => v.to_string(),
    }
}

/// Writes `v`; tuples, lists and frozensets through the closure helpers, dicts and sets through
/// begin/end pairs, so both APIs are exercised. Appends each out-of-band buffer's bytes to `oob`.
fn encode<'v, const N: usize>(
    p: &mut Pickler<'_, N>,
    v: &'v V,
    oob: &mut Vec<&'v [u8]>,
) -> Result<(), EncodeError> {
    let each = |p: &mut Pickler<'_, N>, items: &'v [V], oob: &mut Vec<&'v [u8]>| {
        items.iter().try_for_each(|item| encode(p, item, oob))
    };
    match v {
        V::None => p.none(),
        V::Bool(b) => p.bool(*b),
        V::Int(i) => encode_int(p, *i),
        V::F64(f) => p.f64(*f),
        V::F32(f) => p.f32(*f),
        V::Complex(re, im) => p.complex(*re, *im),
        V::Str(s) => p.str(s),
        V::Bytes(b) => p.bytes(b),
        V::ByteArray(b) => p.bytearray(b),
        V::Tuple(items) => p.tuple(|p| each(p, items, oob)),
        V::List(items) => p.list(|p| each(p, items, oob)),
        V::FrozenSet(items) => p.frozenset(|p| each(p, items, oob)),
        V::Set(items) => {
            p.begin(Container::Set)?;
            each(p, items, oob)?;
            p.end(Container::Set)
        }
        V::Dict(pairs) => {
            p.begin(Container::Dict)?;
            for (key, value) in pairs {
                encode(p, key, oob)?;
                encode(p, value, oob)?;
            }
            p.end(Container::Dict)
        }
        V::Buffer { data, readonly } => {
            let desc = descriptor(oob.len(), data.len(), *readonly);
            oob.push(data);
            p.buffer(desc)
        }
        V::Array {
            dtype,
            shape,
            order,
            data,
            readonly,
        } => {
            let desc = descriptor(oob.len(), data.len(), *readonly);
            oob.push(data);
            p.ndarray(desc, *dtype, shape, *order)
        }
    }
}

fn descriptor(index: usize, len: usize, readonly: bool) -> Descriptor {
    let desc = Descriptor::new(index as u16, (index as u32) * 64, len as u32);
    if readonly {
        desc.read_only()
    } else {
        desc
    }
}

/// numpy's dtype string, spelled out here rather than taken from `DType::str`.
fn numpy_dtype(dtype: DType) -> String {
    let (kind, size) = match dtype.scalar() {
        Scalar::Bool => ('b', 1),
        Scalar::I8 => ('i', 1),
        Scalar::I16 => ('i', 2),
        Scalar::I32 => ('i', 4),
        Scalar::I64 => ('i', 8),
        Scalar::U8 => ('u', 1),
        Scalar::U16 => ('u', 2),
        Scalar::U32 => ('u', 4),
        Scalar::U64 => ('u', 8),
        Scalar::F16 => ('f', 2),
        Scalar::F32 => ('f', 4),
        Scalar::F64 => ('f', 8),
        Scalar::C64 => ('c', 8),
        Scalar::C128 => ('c', 16),
    };
    let order = match (size, dtype.byte_order()) {
        (1, _) => '|',
        (_, ByteOrder::Little) => '<',
        (_, ByteOrder::Big) => '>',
    };
    format!("{order}{kind}{size}")
}

fn bits(f: f64) -> String {
    format!("{:016x}", f.to_bits())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The expected Python value, described without looking at the pickle.
fn describe(v: &V, next_buffer: &mut usize) -> Json {
    let items = |items: &[V], next: &mut usize| -> Vec<Json> {
        items.iter().map(|item| describe(item, next)).collect()
    };
    let mut out_of_band = |t: &str| {
        let i = *next_buffer;
        *next_buffer += 1;
        (t.to_string(), i)
    };
    match v {
        V::None => json!({"t": "none"}),
        V::Bool(b) => json!({"t": "bool", "v": b}),
        V::Int(i) => json!({"t": "int", "v": int_text(*i)}),
        V::F64(f) => json!({"t": "float", "bits": bits(*f)}),
        V::F32(f) => json!({"t": "float", "bits": bits(f64::from(*f))}),
        V::Complex(re, im) => json!({"t": "complex", "re": bits(*re), "im": bits(*im)}),
        V::Str(s) => json!({"t": "str", "v": s}),
        V::Bytes(b) => json!({"t": "bytes", "hex": hex(b)}),
        V::ByteArray(b) => json!({"t": "bytearray", "hex": hex(b)}),
        V::Tuple(xs) => json!({"t": "tuple", "items": items(xs, next_buffer)}),
        V::List(xs) => json!({"t": "list", "items": items(xs, next_buffer)}),
        V::Set(xs) => json!({"t": "set", "items": items(xs, next_buffer)}),
        V::FrozenSet(xs) => json!({"t": "frozenset", "items": items(xs, next_buffer)}),
        V::Dict(pairs) => {
            let pairs: Vec<Json> = pairs
                .iter()
                .map(|(k, v)| {
                    let k = describe(k, next_buffer);
                    json!([k, describe(v, next_buffer)])
                })
                .collect();
            json!({"t": "dict", "items": pairs})
        }
        V::Buffer { readonly, .. } => {
            let (t, i) = out_of_band("buffer");
            json!({"t": t, "i": i, "ro": readonly})
        }
        V::Array {
            dtype,
            shape,
            order,
            readonly,
            ..
        } => {
            let (t, i) = out_of_band("array");
            let order = match order {
                Order::C => "C",
                Order::Fortran => "F",
            };
            json!({"t": t, "i": i, "ro": readonly, "dtype": numpy_dtype(*dtype), "shape": shape, "order": order})
        }
    }
}

// ---- the batch ----------------------------------------------------------------------------------

/// Encodes every value into a batch; returns how many arrays it holds.
fn write_batch(values: &[V], path: &Path) -> usize {
    let mut batch = Batch::default();
    let mut out = vec![0u8; 1 << 20];
    let mut arrays = 0;
    for v in values {
        let mut oob = Vec::new();
        let mut p = Pickler::<'_, BUFFERS>::with_limits(&mut out);
        encode(&mut p, v, &mut oob).unwrap_or_else(|e| panic!("encoding {v:?}: {e}"));
        let encoded = p.finish().unwrap();
        assert_eq!(encoded.descriptors.len(), oob.len());
        for (desc, data) in encoded.descriptors.iter().zip(&oob) {
            assert_eq!(desc.len as usize, data.len());
        }
        let description = describe(v, &mut 0);
        arrays += description.to_string().matches("\"t\":\"array\"").count();
        batch.push(encoded.pickle, &oob, &description);
    }
    // The same values again, each padded to a multiple of 2, 4 or 8 bytes by `align_to`
    // (widened short strings): CPython must load exactly the same value.
    for (i, v) in values.iter().enumerate() {
        let multiple = [2, 4, 8][i % 3];
        let mut oob = Vec::new();
        let mut p = Pickler::<'_, BUFFERS>::with_limits(&mut out);
        encode(&mut p, v, &mut oob).unwrap();
        let before = p.len();
        match p.align_to(multiple) {
            Ok(()) if p.len() != before => {}
            Ok(()) => continue,
            Err(e) => {
                assert_eq!(e, EncodeError::CannotAlign);
                assert_eq!(p.len(), before, "a failed align_to changed the pickle");
                continue;
            }
        }
        let encoded = p.finish().unwrap();
        assert_eq!(encoded.pickle.len() % multiple, 0);
        let mut description = describe(v, &mut 0);
        arrays += description.to_string().matches("\"t\":\"array\"").count();
        description["aligned"] = json!(multiple);
        batch.push(encoded.pickle, &oob, &description);
    }
    batch.write(path);
    arrays
}

fn check_with(python: &Path, batch: &Path) -> Json {
    run_checker(python, batch).unwrap_or_else(|(stderr, stdout)| {
        panic!("{} failed:\n{stderr}\n{stdout}", python.display())
    })
}

#[test]
fn cpython_loads_what_the_pickler_writes_on_numpy_2_and_1_26() {
    let seed: u64 = std::env::var("DMAPICKLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_da7a);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = value();
    let mut values = fixed_cases();
    while values.len() < CASES {
        values.push(strategy.new_tree(&mut runner).unwrap().current());
    }

    let dir = std::env::temp_dir().join(format!("dmapickle-cross-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let batch = dir.join("batch.bin");
    let arrays = write_batch(&values, &batch);
    assert!(arrays > CASES / 4, "only {arrays} arrays generated");

    for (var, venv, major) in PYTHONS {
        let summary = check_with(&python(var, venv), &batch);
        println!("{venv}: {summary}");
        let aligned = summary["aligned"].as_u64().unwrap();
        assert!(aligned > CASES as u64 / 3, "only {aligned} aligned cases");
        assert_eq!(summary["cases"], json!(values.len() as u64 + aligned));
        assert!(summary["aligned_exact"].as_u64().unwrap() > 20);
        assert_eq!(summary["failures"], json!(0));
        // Every array was checked, except values of repeated dict keys (Python keeps the last).
        let dropped = summary["arrays_dropped_by_repeated_keys"].as_u64().unwrap();
        assert!(dropped < arrays as u64 / 20, "{dropped} arrays dropped");
        assert_eq!(summary["arrays"], json!(arrays as u64 - dropped));
        assert!(summary["plain_buffers"].as_u64().unwrap() > 100);
        assert!(summary["cpython_exact"].as_u64().unwrap() > 300);
        let numpy = summary["numpy"].as_str().unwrap();
        assert!(numpy.starts_with(major), "{var} runs numpy {numpy}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The all-or-nothing contract over generated values (Rust only, no Python): wrapped in a
/// top-level tuple, every value either encodes to exactly the bytes it gets in a roomy buffer, or
/// fails with `BufferFull` and leaves nothing behind but the protocol header, whatever the buffer
/// size. Exercises rollback through nested closures, begin/end pairs, batch boundaries, globals
/// and descriptors.
#[test]
fn every_value_is_all_or_nothing_in_every_smaller_buffer() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = value();
    let mut roomy = vec![0u8; 1 << 20];
    let mut values = fixed_cases();
    values.truncate(3); // the long list, list and dict: batch boundaries
    while values.len() < 400 {
        values.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    let mut failures_seen = 0;
    for v in &values {
        let mut p = Pickler::<'_, BUFFERS>::with_limits(&mut roomy);
        p.tuple(|p| encode(p, v, &mut Vec::new())).unwrap();
        let reference = p.finish().unwrap().pickle.to_vec();
        // Every size for short pickles, a spread of sizes for long ones, and the sizes just
        // below the reference length (which needs up to one byte per nesting level more).
        let sizes: Vec<usize> = if reference.len() < 200 {
            (0..reference.len() + 40).collect()
        } else {
            let step = reference.len() / 97;
            (0..reference.len())
                .step_by(step)
                .chain(reference.len() - 3..reference.len() + 40)
                .collect()
        };
        for size in sizes {
            let mut buf = vec![0u8; size];
            let mut p = Pickler::<'_, BUFFERS>::with_limits(&mut buf);
            match p.tuple(|p| encode(p, v, &mut Vec::new())) {
                Ok(()) => assert_eq!(p.finish().unwrap().pickle, &reference[..], "size {size}"),
                Err(error) => {
                    failures_seen += 1;
                    assert_eq!(error, EncodeError::BufferFull, "size {size}: {v:?}");
                    assert!(p.len() <= 2 && p.depth() == 0 && p.descriptors().is_empty());
                    assert_eq!(p.finish(), Err(EncodeError::NotOneValue));
                }
            }
        }
    }
    assert!(failures_seen > 10_000, "{failures_seen}");
}

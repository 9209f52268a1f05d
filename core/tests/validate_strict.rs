//! Property: everything the encoder writes is accepted by the validator under the strict profile
//! (and the general one), with the buffers its descriptors name; and no corruption of those
//! pickles makes the reader or validator panic.

use dmapickle_core::ndarray::{ByteOrder, DType, Order, Scalar};
use dmapickle_core::validate::{Slot, Workspace, MAX_NDIM};
use dmapickle_core::{Descriptor, EncodeError, Error, Pickler, Profile, Validator};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Key {
    None,
    Bool(bool),
    Int(i128),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Key>),
    FrozenSet(Vec<Key>),
}

#[derive(Debug, Clone)]
enum Value {
    Key(Key),
    F64(f64),
    F32(f32),
    Complex(f64, f64),
    ByteArray(Vec<u8>),
    Buffer(u32, bool),
    Array {
        scalar: Scalar,
        big: bool,
        shape: Vec<usize>,
        fortran: bool,
        readonly: bool,
    },
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Key, Value)>),
    Set(Vec<Key>),
}

fn key() -> impl Strategy<Value = Key> {
    let leaf = prop_oneof![
        Just(Key::None),
        any::<bool>().prop_map(Key::Bool),
        any::<i128>().prop_map(Key::Int),
        any::<i64>().prop_map(|v| Key::Int(v.into())),
        (0u8..=255).prop_map(|v| Key::Int(v.into())),
        ".{0,12}".prop_map(Key::Str),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Key::Bytes),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Key::Tuple),
            prop::collection::vec(inner, 0..4).prop_map(Key::FrozenSet),
        ]
    })
}

fn value() -> impl Strategy<Value = Value> {
    let array = (
        prop::sample::select(Scalar::ALL.to_vec()),
        any::<bool>(),
        prop::collection::vec(0usize..4, 0..=MAX_NDIM),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(scalar, big, shape, fortran, readonly)| Value::Array {
            scalar,
            big,
            shape,
            fortran,
            readonly,
        });
    let leaf = prop_oneof![
        key().prop_map(Value::Key),
        any::<f64>().prop_map(Value::F64),
        any::<f32>().prop_map(Value::F32),
        (any::<f64>(), any::<f64>()).prop_map(|(a, b)| Value::Complex(a, b)),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::ByteArray),
        (0u32..100_000, any::<bool>()).prop_map(|(n, ro)| Value::Buffer(n, ro)),
        array,
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
            prop::collection::vec((key(), inner), 0..6).prop_map(Value::Dict),
            prop::collection::vec(key(), 0..6).prop_map(Value::Set),
        ]
    })
}

type P<'a> = Pickler<'a, 256, 64>;

fn write_key(p: &mut P<'_>, k: &Key) -> Result<(), EncodeError> {
    match k {
        Key::None => p.none(),
        Key::Bool(b) => p.bool(*b),
        Key::Int(i) => p.int(*i),
        Key::Str(s) => p.str(s),
        Key::Bytes(b) => p.bytes(b),
        Key::Tuple(items) => {
            p.begin_tuple()?;
            items.iter().try_for_each(|k| write_key(p, k))?;
            p.end_tuple()
        }
        Key::FrozenSet(items) => {
            p.begin_frozenset()?;
            items.iter().try_for_each(|k| write_key(p, k))?;
            p.end_frozenset()
        }
    }
}

fn write(p: &mut P<'_>, v: &Value) -> Result<(), EncodeError> {
    match v {
        Value::Key(k) => write_key(p, k),
        Value::F64(f) => p.f64(*f),
        Value::F32(f) => p.f32(*f),
        Value::Complex(a, b) => p.complex(*a, *b),
        Value::ByteArray(b) => p.bytearray(b),
        Value::Buffer(n, ro) => {
            let d = Descriptor::new(1, 0, *n);
            p.buffer(if *ro { d.read_only() } else { d })
        }
        Value::Array {
            scalar,
            big,
            shape,
            fortran,
            readonly,
        } => {
            let order = if *big {
                ByteOrder::Big
            } else {
                ByteOrder::Little
            };
            let dtype = DType::new(*scalar, order);
            let len = shape.iter().product::<usize>() * scalar.itemsize();
            let d = Descriptor::new(2, 64, len as u32);
            let d = if *readonly { d.read_only() } else { d };
            let order = if *fortran { Order::Fortran } else { Order::C };
            p.ndarray(d, dtype, shape, order)
        }
        Value::Tuple(items) => {
            p.begin_tuple()?;
            items.iter().try_for_each(|v| write(p, v))?;
            p.end_tuple()
        }
        Value::List(items) => {
            p.begin_list()?;
            items.iter().try_for_each(|v| write(p, v))?;
            p.end_list()
        }
        Value::Dict(items) => {
            p.begin_dict()?;
            for (k, v) in items {
                write_key(p, k)?;
                write(p, v)?;
            }
            p.end_dict()
        }
        Value::Set(items) => {
            p.begin_set()?;
            items.iter().try_for_each(|k| write_key(p, k))?;
            p.end_set()
        }
    }
}

fn count_arrays(v: &Value) -> usize {
    match v {
        Value::Array { .. } => 1,
        Value::Tuple(items) | Value::List(items) => items.iter().map(count_arrays).sum(),
        Value::Dict(items) => items.iter().map(|(_, v)| count_arrays(v)).sum(),
        _ => 0,
    }
}

fn validate(profile: Profile, pickle: &[u8], lens: &[usize]) -> Result<usize, Error> {
    let mut stack = vec![Slot::EMPTY; 4096];
    let mut memo = vec![Slot::EMPTY; 1024];
    let mut ws = Workspace::new(&mut stack, &mut memo);
    Validator::new(profile)
        .validate(pickle, lens, &mut ws)
        .map(|v| v.arrays)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn everything_the_encoder_writes_is_accepted_under_strict(v in value(), align in 0..4u32) {
        let mut buf = vec![0u8; 1 << 20];
        let mut p = P::with_limits(&mut buf);
        match write(&mut p, &v) {
            Ok(()) => {}
            // beyond the encoder's own limits: nothing was written to validate
            Err(EncodeError::TooManyBuffers | EncodeError::TooDeep) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("encoder: {e}"))),
        }
        // Padded by `align_to` (widened short strings) in three cases of four.
        let multiple = 1usize << align;
        let aligned = p.align_to(multiple).is_ok();
        let encoded = p.finish().map_err(|e| TestCaseError::fail(format!("finish: {e}")))?;
        let lens: Vec<usize> = encoded.descriptors.iter().map(|d| d.len as usize).collect();
        let arrays = validate(Profile::Strict, encoded.pickle, &lens)
            .map_err(|e| TestCaseError::fail(format!("strict: {e} in {:?}", encoded.pickle)))?;
        prop_assert_eq!(arrays, count_arrays(&v));
        prop_assert!(!aligned || encoded.pickle.len() % multiple == 0);
        prop_assert!(validate(Profile::General, encoded.pickle, &lens).is_ok());
        // A missing or extra buffer is always caught.
        if !lens.is_empty() {
            prop_assert!(validate(Profile::Strict, encoded.pickle, &lens[1..]).is_err());
        }
        let mut more = lens.clone();
        more.push(8);
        prop_assert!(validate(Profile::Strict, encoded.pickle, &more).is_err());
    }

    #[test]
    fn corrupted_encoder_output_never_panics(v in value(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut buf = vec![0u8; 1 << 20];
        let mut p = P::with_limits(&mut buf);
        if write(&mut p, &v).is_err() {
            return Ok(());
        }
        let encoded = p.finish().map_err(|e| TestCaseError::fail(format!("finish: {e}")))?;
        let lens: Vec<usize> = encoded.descriptors.iter().map(|d| d.len as usize).collect();
        let mut bad = encoded.pickle.to_vec();
        let i = at.index(bad.len());
        bad[i] = byte;
        let _ = validate(Profile::General, &bad, &lens);
        let _ = validate(Profile::Strict, &bad, &lens);
        // every strict prefix is rejected
        let cut = cut.index(encoded.pickle.len());
        prop_assert!(validate(Profile::General, &encoded.pickle[..cut], &lens).is_err());
    }
}

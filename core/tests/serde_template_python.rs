//! CPython round trips for the serde serializer and for templates, in one batch per numpy version.
//!
//! * Derived structs of every serde shape (`#[serde(rename)]`, `skip_serializing_if`, nested and
//!   tagged enums, sequences of unknown length, out-of-band `NdArray`/`OobBytes` fields, in-band
//!   slices) are pickled with `to_pickle`; each is described by hand as the Python value it must
//!   load to. Every case is also encoded into buffers of every shorter size: `BufferFull`, never a
//!   panic or a different pickle.
//! * Templates: proptest draws values for every slot kind (ints of each width, including values
//!   that do not fit, floats with NaN/inf, bools, array and buffer descriptors); each draw is
//!   emitted from one template AND encoded fresh with the `Pickler`, and both must load to the
//!   value described independently.
//!
//! Python checks the batch with `tests/python/check_encoded.py` (pickletools, `pickle.loads` with
//! out-of-band buffers, strict equality, arrays zero-copy and read-only as described), under numpy
//! 2.x (`DMAPICKLE_PYTHON`) and numpy 1.26 (`DMAPICKLE_PYTHON_NP1`), else the repo's venvs.
#![cfg(feature = "serde")]

use std::collections::BTreeMap;
use std::path::Path;

use dmapickle_core::ndarray::Order;
use dmapickle_core::ser::{to_pickle, NdArray, OobBytes};
use dmapickle_core::template::{SlotKind, Template};
use dmapickle_core::{Descriptor, EncodeError, Pickler, TemplateBuilder};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::ser::{Serialize, Serializer};
use serde_derive::Serialize;
use serde_json::{json, Value as Json};

mod support;
use support::{python, run_checker, Batch, PYTHONS};

// ---- descriptions (the format of tests/python/check_encoded.py) --------------------------------

fn none() -> Json {
    json!({"t": "none"})
}
fn boolean(v: bool) -> Json {
    json!({"t": "bool", "v": v})
}
fn int(v: impl ToString) -> Json {
    json!({"t": "int", "v": v.to_string()})
}
fn float(v: f64) -> Json {
    json!({"t": "float", "bits": format!("{:016x}", v.to_bits())})
}
fn s(v: &str) -> Json {
    json!({"t": "str", "v": v})
}
fn bytes(v: &[u8]) -> Json {
    let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
    json!({"t": "bytes", "hex": hex})
}
fn tuple(items: Vec<Json>) -> Json {
    json!({"t": "tuple", "items": items})
}
fn list(items: Vec<Json>) -> Json {
    json!({"t": "list", "items": items})
}
fn dict(pairs: Vec<(Json, Json)>) -> Json {
    let pairs: Vec<Json> = pairs.into_iter().map(|(k, v)| json!([k, v])).collect();
    json!({"t": "dict", "items": pairs})
}
/// A dict with str keys.
fn record(fields: Vec<(&str, Json)>) -> Json {
    dict(fields.into_iter().map(|(k, v)| (s(k), v)).collect())
}
fn array(i: usize, dtype: &str, shape: &[usize], order: &str, ro: bool) -> Json {
    json!({"t": "array", "i": i, "ro": ro, "dtype": dtype, "shape": shape, "order": order})
}
fn buffer(i: usize, ro: bool) -> Json {
    json!({"t": "buffer", "i": i, "ro": ro})
}

/// One pickle with its out-of-band buffers' bytes and its description.
struct Case {
    name: String,
    pickle: Vec<u8>,
    buffers: Vec<Vec<u8>>,
    expected: Json,
}

/// Bytes for the `k`-th buffer of `len` bytes.
fn pattern(k: usize, len: u32) -> Vec<u8> {
    (0..len as usize).map(|i| (i * 31 + k * 7) as u8).collect()
}

/// Pickles `value`, checks every shorter output buffer fails cleanly, and returns the case.
fn serde_case<T: Serialize + ?Sized>(name: &str, value: &T, expected: Json) -> Case {
    let mut out = vec![0u8; 1 << 16];
    let encoded = to_pickle(value, &mut out).unwrap_or_else(|e| panic!("{name}: {e}"));
    let pickle = encoded.pickle.to_vec();
    let buffers = (encoded.descriptors.iter().enumerate())
        .map(|(k, d)| pattern(k, d.len))
        .collect();
    // Every truncation: BufferFull, and once it fits, the same bytes. While written, a pickle
    // holds one byte per open container in reserve.
    let step = if pickle.len() > 2000 { 97 } else { 1 };
    let mut fitted = None;
    let sizes = (0..pickle.len())
        .step_by(step)
        .chain(pickle.len()..pickle.len() + 40);
    for size in sizes {
        let mut short = vec![0u8; size];
        match to_pickle(value, &mut short) {
            Ok(e) => {
                assert_eq!(e.pickle, &pickle[..], "{name} at {size}");
                fitted.get_or_insert(size);
            }
            Err(e) => {
                assert_eq!(e, EncodeError::BufferFull, "{name} at {size}");
                assert!(
                    fitted.is_none(),
                    "{name}: {size} fails after {fitted:?} fitted"
                );
            }
        }
    }
    assert!(fitted.is_some(), "{name} never fitted");
    Case {
        name: name.into(),
        pickle,
        buffers,
        expected,
    }
}

// ---- derived types ------------------------------------------------------------------------------

#[path = "../examples/common/sensor.rs"]
mod sensor;
use sensor::Sensor;

#[derive(Serialize)]
struct UnitStruct;

#[derive(Serialize)]
struct Meters(f64);

#[derive(Serialize)]
struct Rgb(u8, u8, u8);

#[derive(Serialize)]
struct Inner {
    id: u8,
    #[serde(rename = "tags")]
    labels: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Everything<'a> {
    flag: bool,
    i8_min: i8,
    i16_min: i16,
    i32_min: i32,
    i64_min: i64,
    i128_min: i128,
    u8_max: u8,
    u16_max: u16,
    u32_max: u32,
    u64_max: u64,
    u128_max: u128,
    tenth: f32,
    nan: f64,
    neg_inf: f64,
    letter: char,
    text: &'a str,
    owned: String,
    #[serde(with = "serde_bytes")]
    raw: &'a [u8],
    maybe: Option<u16>,
    nothing: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kept: Option<u8>,
    #[serde(skip)]
    #[allow(dead_code)]
    never: u8,
    #[serde(rename = "unit-value")]
    unit: (),
    unit_struct: UnitStruct,
    meters: Meters,
    rgb: Rgb,
    pair: (u8, &'a str, bool),
    fixed: [u16; 3],
    samples: &'a [i16],
    empty: Vec<u8>,
    map: BTreeMap<&'a str, i32>,
    int_keys: BTreeMap<u16, Vec<bool>>,
    nested: Inner,
}

#[derive(Serialize)]
enum Mode<'a> {
    Idle,
    Gain(f32),
    Window(u16, u16),
    Scan {
        from: u8,
        to: u8,
        then: Box<Mode<'a>>,
    },
    Raw(OobBytes),
    Capture(NdArray<'a, f32>),
}

#[derive(Serialize)]
#[serde(tag = "kind")]
enum Event {
    Start { at: u64 },
    Stop,
}

#[derive(Serialize)]
#[serde(tag = "t", content = "c")]
enum Adjacent {
    Level(i8),
}

#[derive(Serialize)]
#[serde(untagged)]
enum Reading {
    Int(i64),
    Text(&'static str),
}

#[derive(Serialize)]
struct Frame<'a> {
    adc: NdArray<'a, i16>,
    field: NdArray<'a, f64>,
    raw: OobBytes,
    scalar: NdArray<'a, u8>,
    samples: Vec<i16>,
    more: Option<NdArray<'a, u32>>,
}

#[derive(Serialize)]
struct Header {
    version: u8,
}

#[derive(Serialize)]
struct Flattened {
    #[serde(flatten)]
    header: Header,
    body: &'static str,
}

/// Even values only, as a sequence whose length serde cannot know in advance.
struct Evens<'a>(&'a [u32]);
impl Serialize for Evens<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().filter(|v| *v % 2 == 0))
    }
}

/// Odd values as `{value: value * 2}`, a map of unknown length, and a `Display` string.
struct Odds<'a>(&'a [u32]);
impl Serialize for Odds<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().filter(|v| *v % 2 == 1).map(|v| (v, v * 2)))
    }
}
struct Shown(u32);
impl Serialize for Shown {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("#{}:{:x}", self.0, self.0))
    }
}

fn serde_cases() -> Vec<Case> {
    let mut cases = Vec::new();

    let adc = Descriptor::new(1, 0, 8192).read_only();
    let sensor = Sensor {
        seq: 41,
        t_ns: 1_700_000_000_123_456_789,
        adc: NdArray::new(adc, &[1024, 4]),
        gain: 0.5,
    };
    cases.push(serde_case(
        "sensor",
        &sensor,
        record(vec![
            ("seq", int(41)),
            ("t_ns", int(1_700_000_000_123_456_789u64)),
            ("adc", array(0, "<i2", &[1024, 4], "C", true)),
            ("gain", float(0.5)),
        ]),
    ));

    let samples = [-3i16, 0, 7, i16::MAX];
    let everything = Everything {
        flag: true,
        i8_min: i8::MIN,
        i16_min: i16::MIN,
        i32_min: i32::MIN,
        i64_min: i64::MIN,
        i128_min: i128::MIN,
        u8_max: u8::MAX,
        u16_max: u16::MAX,
        u32_max: u32::MAX,
        u64_max: u64::MAX,
        u128_max: u128::MAX,
        tenth: 0.1,
        nan: f64::NAN,
        neg_inf: f64::NEG_INFINITY,
        letter: 'ß',
        text: "µs ✓",
        owned: "x".repeat(300),
        raw: b"\x00\xffab",
        maybe: Some(9),
        nothing: None,
        skipped: None,
        kept: Some(2),
        never: 1,
        unit: (),
        unit_struct: UnitStruct,
        meters: Meters(-2.5),
        rgb: Rgb(1, 2, 3),
        pair: (4, "p", false),
        fixed: [10, 20, 30],
        samples: &samples,
        empty: Vec::new(),
        map: BTreeMap::from([("a", -1), ("b", 70000)]),
        int_keys: BTreeMap::from([(1, vec![true]), (300, vec![])]),
        nested: Inner {
            id: 5,
            labels: vec!["x", "y"],
        },
    };
    cases.push(serde_case(
        "every field shape",
        &everything,
        record(vec![
            ("flag", boolean(true)),
            ("i8Min", int(i8::MIN)),
            ("i16Min", int(i16::MIN)),
            ("i32Min", int(i32::MIN)),
            ("i64Min", int(i64::MIN)),
            ("i128Min", int(i128::MIN)),
            ("u8Max", int(u8::MAX)),
            ("u16Max", int(u16::MAX)),
            ("u32Max", int(u32::MAX)),
            ("u64Max", int(u64::MAX)),
            ("u128Max", int(u128::MAX)),
            ("tenth", float(f64::from(0.1f32))),
            ("nan", float(f64::NAN)),
            ("negInf", float(f64::NEG_INFINITY)),
            ("letter", s("ß")),
            ("text", s("µs ✓")),
            ("owned", s(&"x".repeat(300))),
            ("raw", bytes(b"\x00\xffab")),
            ("maybe", int(9)),
            ("nothing", none()),
            ("kept", int(2)),
            ("unit-value", none()),
            ("unitStruct", none()),
            ("meters", float(-2.5)),
            ("rgb", tuple(vec![int(1), int(2), int(3)])),
            ("pair", tuple(vec![int(4), s("p"), boolean(false)])),
            ("fixed", tuple(vec![int(10), int(20), int(30)])),
            ("samples", list(samples.iter().map(|&v| int(v)).collect())),
            ("empty", list(vec![])),
            ("map", record(vec![("a", int(-1)), ("b", int(70000))])),
            (
                "intKeys",
                dict(vec![
                    (int(1), list(vec![boolean(true)])),
                    (int(300), list(vec![])),
                ]),
            ),
            (
                "nested",
                record(vec![("id", int(5)), ("tags", list(vec![s("x"), s("y")]))]),
            ),
        ]),
    ));

    let field = Descriptor::new(2, 64, 48);
    let modes = vec![
        Mode::Idle,
        Mode::Gain(2.0),
        Mode::Window(3, 4),
        Mode::Scan {
            from: 1,
            to: 2,
            then: Box::new(Mode::Scan {
                from: 3,
                to: 4,
                then: Box::new(Mode::Window(5, 6)),
            }),
        },
        Mode::Raw(OobBytes(Descriptor::new(3, 0, 5))),
        Mode::Capture(NdArray::with_order(field, &[2, 3, 2], Order::Fortran)),
    ];
    let scan = |from: u8, to: u8, then: Json| {
        record(vec![(
            "Scan",
            record(vec![("from", int(from)), ("to", int(to)), ("then", then)]),
        )])
    };
    cases.push(serde_case(
        "nested enums",
        &modes,
        list(vec![
            s("Idle"),
            record(vec![("Gain", float(2.0))]),
            record(vec![("Window", tuple(vec![int(3), int(4)]))]),
            scan(
                1,
                2,
                scan(3, 4, record(vec![("Window", tuple(vec![int(5), int(6)]))])),
            ),
            record(vec![("Raw", buffer(0, false))]),
            record(vec![("Capture", array(1, "<f4", &[2, 3, 2], "F", false))]),
        ]),
    ));

    cases.push(serde_case(
        "tagged enums",
        &(
            Event::Start { at: 1 << 40 },
            Event::Stop,
            Adjacent::Level(-3),
            [Reading::Int(-5), Reading::Text("t")],
        ),
        tuple(vec![
            record(vec![("kind", s("Start")), ("at", int(1u64 << 40))]),
            record(vec![("kind", s("Stop"))]),
            record(vec![("t", s("Level")), ("c", int(-3))]),
            tuple(vec![int(-5), s("t")]),
        ]),
    ));

    let frame = Frame {
        adc: NdArray::new(Descriptor::new(1, 0, 16).read_only(), &[2, 4]),
        field: NdArray::with_order(Descriptor::new(2, 0, 48), &[2, 3], Order::Fortran),
        raw: OobBytes(Descriptor::new(3, 8, 10).read_only()),
        scalar: NdArray::new(Descriptor::new(4, 0, 1), &[]),
        samples: vec![1, -1, 300],
        more: Some(NdArray::new(Descriptor::new(5, 0, 0), &[0, 3])),
    };
    cases.push(serde_case(
        "out-of-band fields next to in-band ones",
        &frame,
        record(vec![
            ("adc", array(0, "<i2", &[2, 4], "C", true)),
            ("field", array(1, "<f8", &[2, 3], "F", false)),
            ("raw", buffer(2, true)),
            ("scalar", array(3, "|u1", &[], "C", false)),
            ("samples", list(vec![int(1), int(-1), int(300)])),
            ("more", array(4, "<u4", &[0, 3], "C", false)),
        ]),
    ));

    let values: Vec<u32> = (0..2500).collect();
    cases.push(serde_case(
        "unknown lengths, collect_str, flatten",
        &(
            Evens(&values[..9]),
            Odds(&values[..6]),
            Shown(255),
            Flattened {
                header: Header { version: 2 },
                body: "b",
            },
        ),
        tuple(vec![
            list([0, 2, 4, 6, 8].map(int).to_vec()),
            dict([1u32, 3, 5].map(|v| (int(v), int(v * 2))).to_vec()),
            s("#255:ff"),
            record(vec![("version", int(2)), ("body", s("b"))]),
        ]),
    ));
    cases.push(serde_case(
        "sequences of unknown length beyond one batch",
        &Evens(&values),
        list(
            values
                .iter()
                .filter(|v| *v % 2 == 0)
                .map(|&v| int(v))
                .collect(),
        ),
    ));
    cases.push(serde_case(
        "a long list",
        &values,
        list(values.iter().map(|&v| int(v)).collect()),
    ));
    cases
}

// ---- templates ------------------------------------------------------------------------------------

/// Values for one message of the template's shape.
#[derive(Debug, Clone)]
struct Draw {
    seq: u32,
    t_ns: u64,
    adc_offset: u32,
    gain: f32,
    ok: bool,
    /// Set into an `Int32` slot: refused unless it fits.
    temp: i64,
    /// Set into a 5-byte `LONG1` slot: refused unless it fits.
    count: i128,
    big: u128,
    ratio: f64,
    raw_len: u32,
}

fn draw() -> impl Strategy<Value = Draw> {
    let f64s = prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![0.0, -0.0, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE]),
    ];
    let temps = prop_oneof![
        any::<i64>(),
        any::<i32>().prop_map(i64::from),
        prop::sample::select(vec![
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN) - 1,
        ]),
    ];
    let counts = prop_oneof![
        any::<i64>().prop_map(i128::from),
        (-(1i128 << 39) - 2..-(1i128 << 39) + 2),
        ((1i128 << 39) - 2..(1i128 << 39) + 2),
    ];
    (
        (any::<u32>(), any::<u64>(), any::<u32>(), any::<f32>()),
        (any::<bool>(), temps, counts, any::<u128>(), f64s, 0u32..64),
    )
        .prop_map(
            |((seq, t_ns, adc_offset, gain), (ok, temp, count, big, ratio, raw_len))| Draw {
                seq,
                t_ns,
                adc_offset,
                gain,
                ok,
                temp,
                count,
                big,
                ratio,
                raw_len,
            },
        )
}

const ADC: Descriptor = Descriptor::new(1, 0, 8192).read_only();

/// The template's shape, written fresh with the Pickler: what the template must load as.
fn fresh(p: &mut Pickler<'_>, d: &Draw, temp: i64, count: i128) -> Result<(), EncodeError> {
    p.dict(|p| {
        p.str("seq")?;
        p.int(d.seq)?;
        p.str("t_ns")?;
        p.int(d.t_ns)?;
        p.str("adc")?;
        p.array::<i16>(
            Descriptor::new(1, d.adc_offset, 8192).read_only(),
            &[1024, 4],
        )?;
        p.str("gain")?;
        p.f32(d.gain)?;
        p.str("state")?;
        p.tuple(|p| {
            p.bool(d.ok)?;
            p.list(|p| p.int(temp))?;
            p.int(count)
        })?;
        p.str("big")?;
        p.int(d.big)?;
        p.str("ratio")?;
        p.f64(d.ratio)?;
        p.str("raw")?;
        p.buffer(Descriptor::new(7, 3, d.raw_len))
    })
}

fn template_cases(draws: &[Draw]) -> Vec<Case> {
    let storage = Box::leak(vec![0u8; 512].into_boxed_slice());
    let mut b = TemplateBuilder::<'_, 8, 16>::with_limits(storage);
    let (mut ok, mut temp, mut count) = (None, None, None);
    b.begin_dict().unwrap();
    b.str("seq").unwrap();
    let seq = b.int_slot(0u32).unwrap();
    b.str("t_ns").unwrap();
    let t_ns = b.int_slot(0u64).unwrap();
    b.str("adc").unwrap();
    let adc = b.array_slot::<i16>(ADC, &[1024, 4]).unwrap();
    b.str("gain").unwrap();
    let gain = b.f32_slot(0.0).unwrap();
    b.str("state").unwrap();
    b.tuple(|b| {
        ok = Some(b.bool_slot(false)?);
        b.list(|b| {
            temp = Some(b.int_slot_of(SlotKind::Int32, -7i8)?);
            Ok(())
        })?;
        count = Some(b.int_slot_of(SlotKind::Long(5), 11u8)?);
        Ok(())
    })
    .unwrap();
    b.str("big").unwrap();
    let big = b.int_slot(0u128).unwrap();
    b.str("ratio").unwrap();
    let ratio = b.f64_slot(0.0).unwrap();
    b.str("raw").unwrap();
    let raw = b.buffer_slot(Descriptor::new(7, 3, 0)).unwrap();
    b.end_dict().unwrap();
    let template: Template<'_, 8, 16> = b.finish().unwrap();
    let (ok, temp, count) = (ok.unwrap(), temp.unwrap(), count.unwrap());

    let mut cases = Vec::new();
    let mut out = [0u8; 512];
    let mut fresh_out = [0u8; 512];
    for (n, d) in draws.iter().enumerate() {
        let mut msg = template.emit(&mut out).unwrap();
        msg.set_int(seq, d.seq).unwrap();
        msg.set_int(t_ns, d.t_ns).unwrap();
        msg.set_buffer(adc, Descriptor::new(1, d.adc_offset, 8192).read_only())
            .unwrap();
        msg.set_f32(gain, d.gain).unwrap();
        msg.set_bool(ok, d.ok).unwrap();
        // Values that do not fit are refused and leave the template's value in place.
        let temp_fits = i32::try_from(d.temp).is_ok();
        assert_eq!(msg.set_int(temp, d.temp).is_ok(), temp_fits, "{d:?}");
        let count_fits = (-(1i128 << 39)..1i128 << 39).contains(&d.count);
        assert_eq!(msg.set_int(count, d.count).is_ok(), count_fits, "{d:?}");
        if !temp_fits {
            assert_eq!(msg.set_int(temp, d.temp), Err(EncodeError::SlotOverflow));
        }
        msg.set_int(big, d.big).unwrap();
        msg.set_f64(ratio, d.ratio).unwrap();
        msg.set_buffer(raw, Descriptor::new(7, 3, d.raw_len))
            .unwrap();
        let patched = msg.finish();
        let temp_value = if temp_fits { d.temp } else { -7 };
        let count_value = if count_fits { d.count } else { 11 };

        let mut p = Pickler::new(&mut fresh_out);
        fresh(&mut p, d, temp_value, count_value).unwrap();
        let fresh_encoded = p.finish().unwrap();
        assert_eq!(patched.descriptors, fresh_encoded.descriptors, "{d:?}");

        let expected = record(vec![
            ("seq", int(d.seq)),
            ("t_ns", int(d.t_ns)),
            ("adc", array(0, "<i2", &[1024, 4], "C", true)),
            ("gain", float(f64::from(d.gain))),
            (
                "state",
                tuple(vec![
                    boolean(d.ok),
                    list(vec![int(temp_value)]),
                    int(count_value),
                ]),
            ),
            ("big", int(d.big)),
            ("ratio", float(d.ratio)),
            ("raw", buffer(1, false)),
        ]);
        let buffers = vec![pattern(n, 8192), pattern(n + 1, d.raw_len)];
        for (name, pickle) in [
            ("template", patched.pickle),
            ("fresh", fresh_encoded.pickle),
        ] {
            cases.push(Case {
                name: format!("{name} {n}: {d:?}"),
                pickle: pickle.to_vec(),
                buffers: buffers.clone(),
                expected: expected.clone(),
            });
        }
    }
    cases
}

// ---- the batch ---------------------------------------------------------------------------------

fn write_batch(cases: &[Case], path: &Path) {
    let mut batch = Batch::default();
    for case in cases {
        batch.push(&case.pickle, &case.buffers, &case.expected);
    }
    batch.write(path);
}

fn check_with(python: &Path, batch: &Path, cases: &[Case]) -> Json {
    run_checker(python, batch).unwrap_or_else(|(stderr, stdout)| {
        // Name the failing cases: the checker numbers them.
        let named: Vec<String> = stderr
            .lines()
            .filter_map(|line| line.strip_prefix("case "))
            .filter_map(|rest| rest.split(':').next()?.parse::<usize>().ok())
            .filter_map(|n| cases.get(n).map(|c| format!("{n} = {}", c.name)))
            .collect();
        panic!(
            "{} failed:\n{stderr}\n{stdout}\nfailing cases: {named:#?}",
            python.display()
        )
    })
}

#[test]
fn serde_messages_and_patched_templates_load_in_cpython_on_numpy_2_and_1_26() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[0x7e; 32]),
    );
    let strategy = draw();
    let draws: Vec<Draw> = (0..600)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let refused = draws
        .iter()
        .filter(|d| i32::try_from(d.temp).is_err())
        .count();
    assert!(refused > 50 && refused < 550, "{refused} overflowing draws");

    let mut cases = serde_cases();
    let serde_count = cases.len();
    let arrays: usize = cases
        .iter()
        .map(|c| c.expected.to_string().matches("\"t\":\"array\"").count())
        .sum();
    cases.extend(template_cases(&draws));

    let dir = std::env::temp_dir().join(format!("dmapickle-serde-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let batch = dir.join("batch.bin");
    write_batch(&cases, &batch);
    for (var, venv, major) in PYTHONS {
        let summary = check_with(&python(var, venv), &batch, &cases);
        println!("{venv}: {summary}");
        assert_eq!(summary["cases"], json!(cases.len()));
        assert_eq!(summary["failures"], json!(0));
        // One array per template message, and every array of the serde cases.
        assert_eq!(
            summary["arrays"],
            json!((arrays + 2 * draws.len()) as u64),
            "{serde_count} serde cases"
        );
        let numpy = summary["numpy"].as_str().unwrap();
        assert!(numpy.starts_with(major), "{var} runs numpy {numpy}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

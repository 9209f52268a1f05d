//! Fuzz target over the pickle reader and validator.
//!
//! Input: byte 0 = number of out-of-band buffers (low 3 bits); then that many little-endian
//! u32 buffer lengths; the rest is the pickle (scripts/test.d/35-fuzz.sh seeds the corpus from
//! the CPython/numpy vectors and the hostile cases in this layout).
//!
//! Checks: no panic, no hang; every argument displays; what the strict profile accepts the
//! general profile accepts too, with the same result; validation and summary agree in each
//! profile, with the same result (that compares the flat-record proof, which `validate` tries
//! first, with the machine, which `summarize` always runs).
#![no_main]

use std::fmt::Write;

use dmapickle_core::reader::Reader;
use dmapickle_core::validate::{Slot, Workspace};
use dmapickle_core::{Profile, Validator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut rest)) = data.split_first() else {
        return;
    };
    let mut lens = Vec::new();
    for _ in 0..(head & 7) {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return;
        };
        lens.push(u32::from_le_bytes(*len) as usize);
        rest = tail;
    }
    let pickle = rest;

    let mut text = String::new();
    for op in Reader::new(pickle) {
        match op {
            Ok(op) => {
                text.clear();
                let _ = write!(text, "{} {}", op.opcode.name(), op.arg);
            }
            Err(e) => {
                let _ = write!(text, "{e}");
            }
        }
    }

    let mut stack = vec![Slot::EMPTY; 512];
    let mut memo = vec![Slot::EMPTY; 512];
    let mut ws = Workspace::new(&mut stack, &mut memo);
    let strict = Validator::new(Profile::Strict).validate(pickle, &lens, &mut ws);
    let general = Validator::new(Profile::General).validate(pickle, &lens, &mut ws);
    if let Ok(s) = &strict {
        assert_eq!(general.as_ref().ok(), Some(s), "strict accepted what general rejected");
    }
    let mut summary = String::new();
    let summarized = Validator::new(Profile::General).summarize(pickle, &lens, &mut ws, &mut summary);
    assert_eq!(summarized.is_ok(), general.is_ok());
    assert_eq!(summarized.as_ref().ok(), general.as_ref().ok(), "the flat-record proof and the machine disagree");
    summary.clear();
    let machine = Validator::new(Profile::Strict).summarize(pickle, &lens, &mut ws, &mut summary);
    assert_eq!(strict.as_ref().ok(), machine.as_ref().ok(), "the flat-record proof and the machine disagree");
    if let Err(e) = general {
        let _ = write!(text, "{e}");
    }
});

//! The sensor message as a `#[derive(Serialize)]` struct: one definition for every target that
//! encodes it through serde (the `serde_loop` example, the `message_paths` bench, the
//! CPython-comparison test and the `bench/size` serde binary), so that they all measure and
//! check the same type. Each includes this file with `#[path]`.

use dmapickle_core::ser::NdArray;
use serde_derive::Serialize;

/// `{"seq", "t_ns", "adc", "gain"}`: the array goes out-of-band as `NEXT_BUFFER`.
#[derive(Serialize)]
pub struct Sensor<'a> {
    pub seq: u32,
    pub t_ns: u64,
    pub adc: NdArray<'a, i16>,
    pub gain: f32,
}

//! Encode one sensor message the way a device does, and hand it to Python.
//!
//! ```sh
//! cargo run -p dmapickle-core --example sensor_message -- /tmp/msg
//! .venv/np2/bin/python core/examples/load_sensor_message.py /tmp/msg
//! ```
//!
//! The message is `{"seq": 7, "t_ns": ..., "adc": int16 array (1024, 4), "gain": 0.5}`. The ADC
//! samples stay in their "DMA region" (here a static array): the pickle only names them with a
//! descriptor. The example then plays the link: it writes the pickle to `DIR/pickle.bin` and the
//! region bytes the descriptor points at to `DIR/buffer0.bin`.

use dmapickle_core::{Descriptor, Pickler};

/// Samples per channel and channels of one ADC block.
const ROWS: usize = 1024;
const CHANNELS: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("dmapickle-sensor-message"));
    std::fs::create_dir_all(&dir)?;

    // The DMA region the ADC filled: channel c of sample i is 100 * c + i % 100 - 50.
    let mut region = [0i16; ROWS * CHANNELS];
    for (n, sample) in region.iter_mut().enumerate() {
        let (i, c) = (n / CHANNELS, n % CHANNELS);
        *sample = (100 * c + i % 100) as i16 - 50;
    }
    let adc = Descriptor::new(0, 0, core::mem::size_of_val(&region) as u32).read_only();

    // On the device: encode into a small buffer; no allocation, the samples are not touched.
    let mut out = [0u8; 128];
    let mut p = Pickler::new(&mut out);
    p.dict(|p| {
        p.str("seq")?;
        p.int(7u32)?;
        p.str("t_ns")?;
        p.int(1_700_000_000_123_456_789u64)?;
        p.str("adc")?;
        p.array::<i16>(adc, &[ROWS, CHANNELS])?;
        p.str("gain")?;
        p.f32(0.5)
    })
    .map_err(|e| format!("encoding: {e}"))?;
    let encoded = p.finish().map_err(|e| format!("encoding: {e}"))?;
    println!(
        "pickle: {} bytes, {} out-of-band buffer(s): {:?}",
        encoded.pickle.len(),
        encoded.descriptors.len(),
        encoded.descriptors.as_slice()
    );

    // The link: the pickle, then the bytes each descriptor names (little-endian i16 here).
    std::fs::write(dir.join("pickle.bin"), encoded.pickle)?;
    for (i, desc) in encoded.descriptors.iter().enumerate() {
        let start = desc.offset as usize / 2;
        let samples = &region[start..start + desc.len as usize / 2];
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(dir.join(format!("buffer{i}.bin")), bytes)?;
    }
    println!("wrote {}", dir.display());
    Ok(())
}

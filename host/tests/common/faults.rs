//! The fault-injection channel: the device's stream with bit flips, dropped bytes, inserted
//! garbage, truncations and garbage between frames (seeded), shared by `faults.rs` and the
//! spec-decoder comparison.

use std::collections::BTreeSet;

use dmapickle_hal::io::IoLink;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use super::{spec, Device};

#[derive(Debug, Default)]
pub struct Damage {
    pub flipped: u32,
    pub dropped: u32,
    pub inserted: u32,
    pub truncated: u32,
    pub garbage_between: u32,
}

/// The device's clean stream of `count` messages of `spec(seed, i, 100)`, and each frame's byte
/// range in it.
pub fn clean_stream(seed: u64, count: u32) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let mut device = Device::new();
    let mut link = IoLink::new(Vec::new());
    let mut frames = Vec::new();
    for i in 0..count {
        let start = link.get_mut().len();
        device.publish(&mut link, i, &spec(seed, i, 100));
        frames.push(start..link.get_mut().len());
    }
    (link.into_inner(), frames)
}

/// Damage about 40% of the frames (not the first and last); returns the corrupted stream and the
/// set of intact frames.
pub fn corrupt(
    clean: &[u8],
    frames: &[std::ops::Range<usize>],
    seed: u64,
) -> (Vec<u8>, BTreeSet<u32>, Damage) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(clean.len() + clean.len() / 8);
    let mut intact = BTreeSet::new();
    let mut d = Damage::default();
    let last = frames.len() - 1;
    for (i, r) in frames.iter().enumerate() {
        let mut f = clean[r.clone()].to_vec();
        let roll = if i == 0 || i == last {
            0
        } else {
            rng.random_range(0..100)
        };
        let garbage = |n: usize, rng: &mut SmallRng| {
            let mut g = vec![0u8; n];
            rng.fill_bytes(&mut g);
            g
        };
        match roll {
            60..=67 => {
                let at = rng.random_range(0..f.len());
                f[at] ^= 1 << rng.random_range(0..8);
                d.flipped += 1;
            }
            68..=75 => {
                let at = rng.random_range(0..f.len());
                let n = rng.random_range(1..=8).min(f.len() - at);
                f.drain(at..at + n);
                d.dropped += 1;
            }
            76..=83 => {
                let at = rng.random_range(1..f.len());
                let n = rng.random_range(1..=64);
                let g = garbage(n, &mut rng);
                f.splice(at..at, g);
                d.inserted += 1;
            }
            84..=91 => {
                f.truncate(rng.random_range(0..f.len()));
                d.truncated += 1;
            }
            92..=99 => {
                let n = rng.random_range(1..=300);
                out.extend(garbage(n, &mut rng));
                intact.insert(i as u32);
                d.garbage_between += 1;
            }
            _ => {
                intact.insert(i as u32);
            }
        }
        out.extend_from_slice(&f);
    }
    (out, intact, d)
}

//! The frame reader on arbitrary bytes: it must never panic, never allocate beyond its limits,
//! read every byte exactly once, and deliver only messages whose parts match their descriptors.
//! The first input byte picks the reader's staging sizes, so the direct-read path and the
//! rescan-after-failure path are both exercised on small inputs.
#![no_main]

use dmapickle_core::frame::BufferKind;
use dmapickle_host::{FrameReader, ReaderConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mode, stream) = match data.split_first() {
        Some((m, s)) => (*m, s),
        None => return,
    };
    let config = ReaderConfig {
        max_frame: 1 << 20,
        max_pickle: 4096,
        max_buffers: 64,
        read_chunk: [24, 64, 1024, 64 << 10][usize::from(mode & 3)],
        direct_threshold: [1, 16, 256, 16 << 10][usize::from((mode >> 2) & 3)],
        // Odd lengths also accept frames without a data CRC.
        trust_link: stream.len() % 2 == 1,
    };
    // Deliver the stream in pieces of varying size, as a serial port or socket would.
    let reader = Pieces {
        data: stream,
        step: usize::from(mode >> 4) + 1,
    };
    let mut r = FrameReader::with_config(reader, config);
    let mut delivered = 0u64;
    for m in r.by_ref() {
        let Ok(m) = m else { continue };
        delivered += 1;
        for b in &m.buffers {
            // No regions are mapped, so only inline buffers can be delivered.
            assert_eq!(b.kind, BufferKind::Inline);
            assert_eq!(b.data.len(), b.descriptor.len as usize);
        }
    }
    let c = r.counters();
    assert_eq!(c.bytes_read, stream.len() as u64);
    assert_eq!(c.frames_ok, delivered);
});

struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.step = self.step % 97 + 13;
        Ok(n)
    }
}

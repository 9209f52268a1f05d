//! The same frame header + 4 descriptor entries, written and read two ways: dmapickle's fixed
//! little-endian layout (`dmapickle_core::frame`) and postcard (varints) over equivalent serde
//! structs. Each function is `#[no_mangle]` so its code size can be read off the symbol table.
#![no_std]

use dmapickle_core::frame::{Entry, Header, ENTRY_LEN, HEADER_LEN};
use dmapickle_core::Descriptor;
use serde::{Deserialize, Serialize};

/// Entries per message in the measurement.
pub const N: usize = 4;

/// The header as a serde struct (postcard adds no sync word or CRC of its own).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct PHeader {
    pub sync: u32,
    pub version: u8,
    pub flags: u8,
    pub buffers: u16,
    pub seq: u32,
    pub pickle_len: u32,
    pub inline_len: u32,
}

/// One descriptor entry as a serde struct.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PEntry {
    pub region: u16,
    pub flags: u8,
    pub offset: u32,
    pub len: u32,
}

/// Header and table, postcard.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct PMeta {
    pub header: PHeader,
    pub entries: [PEntry; N],
}

#[no_mangle]
pub fn fixed_encode(h: &Header, e: &[Entry; N], out: &mut [u8; HEADER_LEN + N * ENTRY_LEN]) {
    let (head, table) = out.split_at_mut(HEADER_LEN);
    head.copy_from_slice(&h.encode());
    for (dst, e) in table.chunks_exact_mut(ENTRY_LEN).zip(e) {
        dst.copy_from_slice(&e.encode());
    }
}

#[no_mangle]
pub fn fixed_decode(bytes: &[u8; HEADER_LEN + N * ENTRY_LEN]) -> Option<(Header, [Entry; N])> {
    let h = Header::decode(bytes[..HEADER_LEN].try_into().ok()?).ok()?;
    let mut out = [Entry::inline(Descriptor::new(0, 0, 0)); N];
    for (o, c) in out
        .iter_mut()
        .zip(bytes[HEADER_LEN..].chunks_exact(ENTRY_LEN))
    {
        *o = Entry::decode(c.try_into().ok()?).ok()?;
    }
    Some((h, out))
}

#[no_mangle]
pub fn postcard_encode(m: &PMeta, out: &mut [u8; 96]) -> usize {
    postcard::to_slice(m, out).map(|s| s.len()).unwrap_or(0)
}

#[no_mangle]
pub fn postcard_decode(bytes: &[u8]) -> Option<PMeta> {
    postcard::from_bytes(bytes).ok()
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

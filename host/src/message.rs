//! A delivered message: the pickle and its out-of-band buffers, as zero-copy views.

use bytes::Bytes;
use dmapickle_core::frame::BufferKind;
use dmapickle_core::Descriptor;

/// One out-of-band buffer of a [`Message`].
#[derive(Debug, Clone)]
pub struct Buffer {
    /// The bytes: a view of the reader's receive block (inline) or of the mapped region
    /// (shared). Cloning is cheap (a reference count). A shared buffer is released to the device
    /// when the last clone is dropped; an inline receive block goes back to the reader's pool.
    pub data: Bytes,
    /// The descriptor as the frame carried it.
    pub descriptor: Descriptor,
    /// Whether the bytes came inline or stayed in a shared region.
    pub kind: BufferKind,
}

impl Buffer {
    /// Whether Python must see this buffer read-only (`READONLY_BUFFER`).
    pub fn readonly(&self) -> bool {
        self.descriptor.readonly
    }
}

/// One message as the frame reader delivers it: checked by all three CRCs and the validator.
///
/// `pickle` and every inline buffer are views of one receive block, each buffer aligned to 64
/// bytes, so `pickle.loads(pickle, buffers=...)` builds numpy arrays directly on them.
#[derive(Debug, Clone)]
pub struct Message {
    /// The frame's sequence number.
    pub seq: u32,
    /// The device (re)started its sequence counter with this frame.
    pub restart: bool,
    /// The protocol-5 pickle.
    pub pickle: Bytes,
    /// The out-of-band buffers, in `NEXT_BUFFER` order (Python's `buffers=` list).
    pub buffers: Vec<Buffer>,
    /// Byte offset of the frame's header in the stream.
    pub stream_offset: u64,
    /// When the frame's last byte was read: [`crate::stream::monotonic_ns`] as the read that
    /// returned it came back (frames that arrive in one read share it). For a frame found again
    /// after a corrupt one was rescanned, the latest read instead, which is later.
    pub host_ns: u64,
}

impl Message {
    /// The buffers' bytes, in order.
    pub fn buffer_bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.buffers.iter().map(|b| &b.data[..])
    }
}

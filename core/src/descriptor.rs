//! Out-of-band buffer descriptors: where the bytes of a `NEXT_BUFFER` live.

/// Names one out-of-band buffer of a message: `len` bytes at `offset` in DMA region `region`.
///
/// The encoder never reads the bytes a descriptor points at; it only records the descriptor in the
/// order its `NEXT_BUFFER` opcode appears in the pickle. The link layer later either sends the
/// bytes after the frame (inline) or leaves them in a region the host maps (shared region).
///
/// ```
/// use dmapickle_core::Descriptor;
/// let d = Descriptor::new(2, 0x100, 8192).read_only();
/// assert_eq!((d.region, d.offset, d.len, d.readonly), (2, 0x100, 8192, true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Descriptor {
    /// Which DMA region the bytes are in (an id the device and host agree on).
    pub region: u16,
    /// Byte offset of the buffer inside its region.
    pub offset: u32,
    /// Length of the buffer in bytes.
    pub len: u32,
    /// Whether Python must see the buffer read-only (`READONLY_BUFFER` follows `NEXT_BUFFER`).
    pub readonly: bool,
}

impl Descriptor {
    /// A writable buffer of `len` bytes at `offset` in `region`.
    pub const fn new(region: u16, offset: u32, len: u32) -> Self {
        Descriptor {
            region,
            offset,
            len,
            readonly: false,
        }
    }

    /// The same buffer, marked read-only for the Python side.
    pub const fn read_only(self) -> Self {
        Descriptor {
            readonly: true,
            ..self
        }
    }

    /// One past the last byte of the buffer inside its region, or `None` on overflow.
    pub const fn end(&self) -> Option<u32> {
        self.offset.checked_add(self.len)
    }
}

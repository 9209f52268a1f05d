//! Typed views of DMA bytes: [`Block`], memory aligned for every element type, and [`Pod`], the
//! element types a buffer can be viewed as in place.
//!
//! A buffer made of `Block`s ([`DmaBuf::split`](crate::DmaBuf::split),
//! [`DmaBuf::from_block`](crate::DmaBuf::from_block)) or a shared-region slot (64-byte aligned)
//! is aligned for every [`Pod`] type, so `as_mut_slice_of::<i16>()` on it never fails. Samples
//! are then written as native `i16`s, which is exactly the dtype `Pickler::array::<i16>` names
//! (`"<i2"` on a little-endian chip): no `to_le_bytes`, no `chunks_exact_mut(2)`.

use core::mem::{align_of, size_of};
use dmapickle_core::ndarray::{byte_len, Element};

use crate::Error;

/// `L` bytes of DMA memory, 8-byte aligned: the alignment of every [`Pod`] type, so typed views
/// of it never fail. `[Block<L>; N]` is a ready-made ring of `N` buffers for
/// [`DmaBuf::split`](crate::DmaBuf::split).
///
/// ```
/// use dmapickle_hal::Block;
/// static mut _BLOCKS: [Block<1024>; 4] = [Block::ZERO; 4]; // .bss, no copy through the stack
/// assert_eq!(core::mem::align_of::<Block<3>>(), 8);
/// assert_eq!(core::mem::size_of::<Block<1024>>(), 1024);
/// ```
#[repr(C, align(8))]
pub struct Block<const L: usize>(pub [u8; L]);

impl<const L: usize> Block<L> {
    /// A zeroed block; a constant, so `[Block::ZERO; N]` initialises a `static` array.
    pub const ZERO: Self = Block([0; L]);

    /// A zeroed block.
    pub const fn new() -> Self {
        Self::ZERO
    }
}

impl<const L: usize> Default for Block<L> {
    fn default() -> Self {
        Self::ZERO
    }
}

impl<const L: usize> AsMut<[u8]> for Block<L> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl<const L: usize> core::fmt::Debug for Block<L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Block<{L}>")
    }
}

mod sealed {
    pub trait Sealed {}
}

/// An element type a DMA buffer can be viewed as in place: a fixed-width integer, `f32` or
/// `f64`. Every bit pattern is a value and there is no padding, so any bytes (a peripheral's,
/// the host's) read as one. Sealed; `bool` is not one (only 0 and 1 are `bool`s): fill a
/// `u8` view with 0/1 and name the array `DType::of::<bool>()` instead.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an element type a DMA buffer can be viewed as",
    label = "not a `dmapickle_hal::Pod` type",
    note = "typed views exist for u8, i8, u16, i16, u32, i32, u64, i64, f32 and f64; for bool, write 0/1 through a `u8` view and encode it with `Pickler::ndarray(desc, DType::of::<bool>(), ..)`"
)]
pub trait Pod: Element + sealed::Sealed {}

macro_rules! pod {
    ($($t:ty),*) => {
        $(impl sealed::Sealed for $t {}
          impl Pod for $t {})*
    };
}
pod!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// `bytes` as `T`s (trailing bytes that make no whole `T` left out); misaligned memory is
/// [`Error::BufferAlignment`].
pub(crate) fn view_mut<T: Pod>(bytes: &mut [u8]) -> Result<&mut [T], Error> {
    if !(bytes.as_ptr() as usize).is_multiple_of(align_of::<T>()) {
        return Err(Error::BufferAlignment);
    }
    let n = bytes.len() / size_of::<T>();
    // SAFETY: the pointer is aligned for `T` (checked above) and `n * size_of::<T>()` bytes
    // from it lie inside `bytes`; every bit pattern is a `T` and `T` has no padding (`Pod` is
    // sealed to the primitive integers and floats), so the bytes are valid `T`s and any `T`
    // written is valid bytes; the exclusive borrow of `bytes` moves to the result.
    Ok(unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<T>(), n) })
}

/// `bytes` (filled, so a whole number of `T`s, else [`Error::BufferLength`]) as `T`s.
pub(crate) fn view<T: Pod>(bytes: &[u8]) -> Result<&[T], Error> {
    if !(bytes.as_ptr() as usize).is_multiple_of(align_of::<T>()) {
        return Err(Error::BufferAlignment);
    }
    if !bytes.len().is_multiple_of(size_of::<T>()) {
        return Err(Error::BufferLength);
    }
    // SAFETY: as in `view_mut`, for a shared borrow; the length is an exact multiple.
    Ok(unsafe {
        core::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size_of::<T>())
    })
}

/// Bytes an array of `T` with `shape` takes, if that fits in `capacity` bytes.
pub(crate) fn shaped_len<T: Pod>(shape: &[usize], capacity: usize) -> Result<usize, Error> {
    byte_len(shape, size_of::<T>())
        .filter(|&len| len <= capacity && u32::try_from(len).is_ok())
        .ok_or(Error::BufferLength)
}

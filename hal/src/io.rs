//! A [`Link`] over any `std::io::Write` (pipe, socket, file), for host tests and the demo: the
//! real device code runs unchanged on the host.

use embedded_dma::ReadBuffer;
use std::io::Write;

use crate::link::{send_blocking, Completed, Link};

/// A link that writes to `W`. A "DMA transfer" is a `write_all` of the buffer's bytes, done by
/// the time [`Link::transfer`] returns; the buffer is still owned by the transfer until `wait`.
///
/// ```
/// use dmapickle_hal::{io::IoLink, Link, Transfer};
/// let mut link = IoLink::new(Vec::new());
/// link.write(&[1, 2]).unwrap();
/// let buf: &'static mut [u8] = Box::leak(Box::new([3u8, 4]));
/// let (buf, r) = link.transfer(buf).wait();
/// r.unwrap();
/// buf[0] = 9; // the buffer is ours again
/// assert_eq!(link.into_inner(), [1, 2, 3, 4]);
/// ```
#[derive(Debug)]
pub struct IoLink<W: Write> {
    inner: W,
}

impl<W: Write> IoLink<W> {
    /// A link writing to `inner`.
    pub fn new(inner: W) -> Self {
        IoLink { inner }
    }

    /// The writer, e.g. to flush or shut it down.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Give the writer back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Link for IoLink<W> {
    type Error = std::io::Error;
    type Transfer<'a, B>
        = Completed<B, std::io::Error>
    where
        Self: 'a,
        B: ReadBuffer<Word = u8> + 'static;

    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.inner.write_all(bytes)
    }

    fn transfer<B>(&mut self, buffer: B) -> Self::Transfer<'_, B>
    where
        B: ReadBuffer<Word = u8> + 'static,
    {
        let result = send_blocking(&buffer, |bytes| self.inner.write_all(bytes));
        Completed::new(buffer, result)
    }
}

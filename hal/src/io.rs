//! The blocking link adapter: any [`embedded_io::Write`] (a UART, an RTT channel, a USB CDC
//! class, a socket) is a [`Link`].
//!
//! This is the one place the hal turns a byte writer into a link: [`WriteLink`] for the
//! ecosystem's `embedded_io::Write` (`no_std`), and, with the `std` feature, `IoLink` for
//! `std::io::Write`, which is `WriteLink` over `embedded_io_adapters::std::FromStd`.

use embedded_dma::ReadBuffer;

use crate::link::{send_blocking, Completed, Link};

/// A [`Link`] over any blocking [`embedded_io::Write`]: frame parts with `write_all`, and each
/// "DMA transfer" done by the CPU with `write_all` of the buffer's bytes ([`send_blocking`]),
/// complete by the time [`Link::transfer`] returns. The buffer stays the transfer's until
/// [`Transfer::wait`](crate::Transfer::wait) gives it back, as for a real DMA engine.
///
/// Your chip's HAL implements `embedded_io::Write` for its UART (embassy, esp-hal, rp-hal,
/// stm32 HALs do), so the link is one line:
///
/// ```
/// use dmapickle_hal::{Link, WriteLink};
/// let mut wire = [0u8; 2];
/// let uart = &mut wire[..]; // stands in for the board's UART: any `embedded_io::Write`
/// let mut link = WriteLink::new(uart);
/// link.write(&[1, 2]).unwrap();
/// assert_eq!(wire, [1, 2]);
/// ```
///
/// A peripheral without a HAL needs only `embedded_io::Write` (two methods), never the [`Link`]
/// trait itself:
///
/// ```no_run
/// use core::convert::Infallible;
/// use dmapickle_hal::{Link, WriteLink};
///
/// /// The transmit side of a UART: DATA at `base`, STATE (bit 0: TX full) at `base + 4`.
/// struct Uart {
///     base: usize,
/// }
///
/// impl embedded_io::ErrorType for Uart {
///     type Error = Infallible;
/// }
///
/// impl embedded_io::Write for Uart {
///     fn write(&mut self, bytes: &[u8]) -> Result<usize, Infallible> {
///         let Some(&byte) = bytes.first() else { return Ok(0) };
///         let (data, state) = (self.base as *mut u32, (self.base + 4) as *const u32);
///         // SAFETY: DATA and STATE are this UART's always-mapped, aligned MMIO registers.
///         while unsafe { state.read_volatile() } & 1 != 0 {}
///         // SAFETY: as above.
///         unsafe { data.write_volatile(u32::from(byte)) };
///         Ok(1)
///     }
///
///     fn flush(&mut self) -> Result<(), Infallible> {
///         Ok(())
///     }
/// }
///
/// let mut link = WriteLink::new(Uart { base: 0x4000_4000 });
/// link.write(b"hello").unwrap(); // on the board: five bytes out of UART0
/// ```
///
/// The link never calls `flush`: if your writer buffers (a `BufWriter`, a buffered UART driver),
/// flush it through [`WriteLink::get_mut`] when a frame must leave now.
#[derive(Debug)]
pub struct WriteLink<W> {
    inner: W,
}

impl<W> WriteLink<W> {
    /// A link writing to `inner`.
    pub const fn new(inner: W) -> Self {
        WriteLink { inner }
    }

    /// The writer, e.g. to flush it or change its baud rate between frames.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The writer, shared.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Give the writer back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: embedded_io::Write> Link for WriteLink<W> {
    type Error = W::Error;
    type Transfer<'a, B>
        = Completed<B, W::Error>
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

#[cfg(feature = "std")]
pub use self::std_link::IoLink;

#[cfg(feature = "std")]
mod std_link {
    use embedded_dma::ReadBuffer;
    use embedded_io_adapters::std::FromStd;

    use super::WriteLink;
    use crate::link::{Completed, Link};

    /// A [`Link`] over any `std::io::Write` (pipe, socket, file, `Vec`), for host tests and
    /// simulators: the real device code runs unchanged on the host. It is [`WriteLink`] over
    /// `embedded_io_adapters::std::FromStd`, with the `std` writer in and out.
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
    ///
    /// Its error is `std::io::Error`, whose [`Link::Error`] kind is the `embedded-io` one:
    ///
    /// ```
    /// use dmapickle_hal::embedded_io::{self, ErrorKind};
    /// use dmapickle_hal::{io::IoLink, Link};
    /// let mut full = [0u8; 2];
    /// let mut link = IoLink::new(&mut full[..]); // a `&mut [u8]` writer ends when it is full
    /// let e = link.write(&[1, 2, 3]).unwrap_err();
    /// // (`std::io::Error::kind` is the std one; generic code over `L: Link` calls `e.kind()`.)
    /// assert_eq!(embedded_io::Error::kind(&e), ErrorKind::WriteZero);
    /// ```
    pub struct IoLink<W: std::io::Write> {
        link: WriteLink<FromStd<W>>,
    }

    impl<W: std::io::Write + core::fmt::Debug> core::fmt::Debug for IoLink<W> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            let inner = self.link.get_ref().inner();
            f.debug_struct("IoLink").field("inner", inner).finish()
        }
    }

    impl<W: std::io::Write> IoLink<W> {
        /// A link writing to `inner`.
        pub fn new(inner: W) -> Self {
            IoLink {
                link: WriteLink::new(FromStd::new(inner)),
            }
        }

        /// The writer, e.g. to flush or shut it down.
        pub fn get_mut(&mut self) -> &mut W {
            self.link.get_mut().inner_mut()
        }

        /// Give the writer back.
        pub fn into_inner(self) -> W {
            self.link.into_inner().into_inner()
        }
    }

    impl<W: std::io::Write> Link for IoLink<W> {
        type Error = std::io::Error;
        type Transfer<'a, B>
            = Completed<B, std::io::Error>
        where
            Self: 'a,
            B: ReadBuffer<Word = u8> + 'static;

        fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
            self.link.write(bytes)
        }

        fn transfer<B>(&mut self, buffer: B) -> Self::Transfer<'_, B>
        where
            B: ReadBuffer<Word = u8> + 'static,
        {
            self.link.transfer(buffer)
        }
    }
}

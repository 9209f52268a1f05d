//! The data connection as the publisher's link: `embedded_io_async::Write` over an embassy-net
//! TCP socket that copies each write into the socket's send buffer with
//! [`dmapickle_firmware::copy::copy`] (`TcpSocket::write_with`), instead of the socket's own
//! `write`, whose `memcpy` takes the portable shift-and-merge path whenever a block lands at a
//! stream offset of different word alignment (three blocks in four).

use dmapickle_firmware::copy::copy;
use embassy_net::tcp::{Error, TcpSocket};

/// `&mut TcpSocket` as a link; same bytes, same waiting, same errors as the socket's `write`.
pub struct TcpLink<'s, 'a>(pub &'s mut TcpSocket<'a>);

impl embedded_io_async::ErrorType for TcpLink<'_, '_> {
    type Error = Error;
}

impl embedded_io_async::Write for TcpLink<'_, '_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        if bytes.is_empty() {
            return Ok(0);
        }
        // `write_with` waits until the send buffer has room and offers its contiguous free
        // part (at least one byte); the closure says how much it filled.
        self.0
            .write_with(|room| {
                let n = copy(room, bytes);
                (n, n)
            })
            .await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.0.flush().await
    }
}

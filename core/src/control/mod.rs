//! Host -> device control: a small, versioned command set and its framing on the link.
//!
//! Data flows up the link in [`crate::frame`] frames. Commands flow **down** the same link (UART
//! RX, the TCP connection) and their replies come **up** interleaved with the data frames, each
//! in a small control frame ([`wire`]) whose sync word differs from the data frame's in its third
//! byte, so a data reader hunting for `F1 50 4B 05` passes over a reply as skipped bytes and never
//! counts it as a corrupt data frame.
//!
//! The messages ([`command`]) are [postcard](https://docs.rs/postcard) encodings of [`Request`]
//! and [`Reply`]: one byte of variant index, then the fields as varints. postcard because these
//! are small, rare, and evolve: a new command is a new variant at the end, an old device answers
//! it with [`CommandError::Unknown`] instead of misreading it. The data frame stays a fixed layout
//! (see `docs/wire-format.md`, "Why a fixed layout and not postcard").
//!
//! Every control frame carries a request id and a CRC-32C: a corrupt or cut-off command is never
//! applied (the device does not see it, the host times out and sends it again with the **same**
//! id), and the device answers a repeated id with its cached reply instead of applying the command
//! twice (`dmapickle_hal::control::ReplyCache`).
//!
//! ```
//! use dmapickle_core::control::{encode_request, parse, Direction, Parsed, Request};
//! let mut out = [0u8; 32];
//! let frame = encode_request(7, &Request::SetRate { rate_hz: 32_000 }, &mut out).unwrap();
//! assert_eq!(frame, &[0xf1, 0x50, 0x43, 0x44, 0x01, 0x04, 0x07, 0x00, 0x00, 0x00, // header
//!                     0x01, 0x80, 0xfa, 0x01,                                      // SetRate 32000
//!                     0x05, 0x27, 0x08, 0xab][..]);                                // CRC
//! match parse(Direction::Down, frame) {
//!     Parsed::Frame { id, payload, len, .. } => {
//!         assert_eq!((id, len), (7, frame.len()));
//!         assert_eq!(Request::decode(payload), Ok(Request::SetRate { rate_hz: 32_000 }));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

pub mod command;
pub mod wire;

pub use command::{CommandError, Info, LinkKind, Refusal, Reply, Request, Stats};
pub use wire::{
    encode_frame, encode_reply, encode_request, parse, Direction, FrameError, Parsed, HEADER_LEN,
    MAX_FRAME, MAX_PAYLOAD, SYNC_DOWN, SYNC_UP, VERSION,
};

//! The command set, version 1: what the host asks ([`Request`]) and what the device answers
//! ([`Reply`]). postcard encodes an enum as its variant index (a varint: one byte here), then
//! its fields in order, integers as varints; the indices below are part of the wire format and
//! never change. A new command is a new variant at the end.

use serde::{Deserialize, Serialize};

/// A command, host -> device.
///
/// ```
/// use dmapickle_core::control::Request;
/// let mut out = [0u8; 16];
/// assert_eq!(Request::GetInfo.encode(&mut out).unwrap(), &[0x00]);
/// assert_eq!(Request::Ping { host_ns: 300 }.encode(&mut out).unwrap(), &[0x06, 0xac, 0x02]);
/// // An index this version does not know is an error, not a guess.
/// assert!(Request::decode(&[0x07]).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request {
    /// 0: what the device is and how it streams ([`Reply::Info`]).
    GetInfo,
    /// 1: sample rate in Hz, from the next block on ([`Reply::Applied`]).
    SetRate {
        /// Rows (samples per channel) per second.
        rate_hz: u32,
    },
    /// 2: rows per block, from the next block on ([`Reply::Applied`]).
    SetBlockRows {
        /// Rows of each `(rows, channels)` array.
        rows: u32,
    },
    /// 3: resume acquisition ([`Reply::Applied`]).
    Start,
    /// 4: pause acquisition after the blocks already acquired went out ([`Reply::Applied`]).
    Stop,
    /// 5: the device's counters ([`Reply::Stats`]).
    GetStats,
    /// 6: clock alignment: echoes `host_ns` with the device's time ([`Reply::Pong`]).
    Ping {
        /// The host's clock when it sent the command, in ns.
        host_ns: u64,
    },
}

/// A reply, device -> host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reply {
    /// 0: the answer to [`Request::GetInfo`].
    Info(Info),
    /// 1: a change was applied between two blocks: block `at_seq` is the first one with it
    /// (for `Stop`: the first block after the pause).
    Applied {
        /// The first seq of the new setting.
        at_seq: u32,
    },
    /// 2: the answer to [`Request::GetStats`].
    Stats(Stats),
    /// 3: the answer to [`Request::Ping`].
    Pong {
        /// `host_ns` of the request, echoed.
        host_ns: u64,
        /// The device's clock when it handled the request, in us since acquisition started
        /// (the clock of its log timestamps).
        device_us: u64,
    },
    /// 4: the command was not applied.
    Error(CommandError),
}

/// Why a command was not applied. Nothing changed on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CommandError {
    /// 0: the payload is not a command this device knows (a newer host, or a malformed one).
    Unknown,
    /// 1: the frame's version is not one this device reads.
    UnsupportedVersion {
        /// The version it reads.
        supported: u8,
    },
    /// 2: a valid command the device cannot honour now.
    Refused {
        /// Why.
        reason: Refusal,
    },
    /// 3: a value out of range: the valid range is `min ..= max`.
    Invalid {
        /// Smallest value accepted.
        min: u32,
        /// Largest value accepted.
        max: u32,
    },
}

/// Why a valid command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Refusal {
    /// 0: `Start` while acquisition runs.
    AlreadyRunning,
    /// 1: `Stop` while acquisition is paused.
    AlreadyStopped,
    /// 2: a change of the block layout while the host holds `lent` shared-region buffers of the
    /// old layout.
    BuffersLent {
        /// Buffers the host has not released yet.
        lent: u16,
    },
}

/// How array bytes reach the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LinkKind {
    /// 0: inline after each frame.
    Inline,
    /// 1: left in a shared region the host maps.
    Shared,
}

/// The answer to [`Request::GetInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Info {
    /// Firmware version `[major, minor, patch]`.
    pub firmware: [u8; 3],
    /// Data frame version ([`crate::frame::VERSION`]).
    pub wire_version: u8,
    /// Control frame version ([`super::VERSION`]).
    pub control_version: u8,
    /// Inline or shared region.
    pub link: LinkKind,
    /// The region id the arrays' descriptors name.
    pub region: u16,
    /// Bytes of that region (0 for RAM buffers the host never maps).
    pub region_len: u32,
    /// Block buffers (slots) of the region.
    pub slots: u16,
    /// Rows per block now.
    pub block_rows: u32,
    /// Largest rows per block `SetBlockRows` accepts.
    pub max_block_rows: u32,
    /// Channels (columns) per row; each sample is a little-endian int16.
    pub channels: u8,
    /// Sample rate now, in Hz.
    pub rate_hz: u32,
    /// Largest rate `SetRate` accepts.
    pub max_rate_hz: u32,
    /// Acquisition runs (`false` after `Stop`).
    pub running: bool,
    /// The seq of the next block to be published.
    pub next_seq: u32,
}

/// The answer to [`Request::GetStats`]: counters since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Blocks published (frames sent, `drop=` ones included).
    pub published: u32,
    /// ADC ticks that found no free buffer.
    pub adc_stalls: u32,
    /// Buffers too small for a block, or full blocks the ready queue could not take.
    pub overflows: u32,
    /// Shared-region buffers lent to the host now.
    pub lent: u16,
    /// Blocks whose frame was never sent (`drop=`).
    pub dropped: u32,
    /// Commands applied or answered (repeats excluded).
    pub commands: u32,
    /// Down-link bytes skipped by the command reader (garbage, corrupt or cut-off commands).
    pub bytes_skipped: u32,
    /// Repeated request ids answered from the reply cache, not applied again.
    pub repeats: u32,
}

/// Why a message could not be decoded (postcard's error, kept small).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DecodeError;

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("not a control message of this version")
    }
}

macro_rules! postcard_codec {
    ($t:ty) => {
        impl $t {
            /// The postcard encoding of `self` in `out`.
            pub fn encode<'o>(&self, out: &'o mut [u8]) -> Result<&'o mut [u8], DecodeError> {
                postcard::to_slice(self, out).map_err(|_| DecodeError)
            }

            /// Decodes a payload; trailing bytes are an error (a frame holds exactly one message).
            pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
                match postcard::take_from_bytes::<Self>(payload) {
                    Ok((msg, [])) => Ok(msg),
                    _ => Err(DecodeError),
                }
            }
        }
    };
}

postcard_codec!(Request);
postcard_codec!(Reply);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_reply(r: Reply) -> usize {
        let mut out = [0u8; super::super::MAX_PAYLOAD];
        let n = r.encode(&mut out).unwrap().len();
        assert_eq!(Reply::decode(&out[..n]), Ok(r));
        n
    }

    #[test]
    fn largest_replies_fit_a_frame() {
        let info = Info {
            firmware: [255; 3],
            wire_version: 255,
            control_version: 255,
            link: LinkKind::Shared,
            region: u16::MAX,
            region_len: u32::MAX,
            slots: u16::MAX,
            block_rows: u32::MAX,
            max_block_rows: u32::MAX,
            channels: 255,
            rate_hz: u32::MAX,
            max_rate_hz: u32::MAX,
            running: true,
            next_seq: u32::MAX,
        };
        assert!(round_trip_reply(Reply::Info(info)) <= super::super::MAX_PAYLOAD);
        let stats = Stats {
            published: u32::MAX,
            adc_stalls: u32::MAX,
            overflows: u32::MAX,
            lent: u16::MAX,
            dropped: u32::MAX,
            commands: u32::MAX,
            bytes_skipped: u32::MAX,
            repeats: u32::MAX,
        };
        assert!(round_trip_reply(Reply::Stats(stats)) <= super::super::MAX_PAYLOAD);
        round_trip_reply(Reply::Pong {
            host_ns: u64::MAX,
            device_us: u64::MAX,
        });
        round_trip_reply(Reply::Error(CommandError::Refused {
            reason: Refusal::BuffersLent { lent: 3 },
        }));
    }

    #[test]
    fn exact_bytes_of_errors() {
        let mut out = [0u8; 16];
        let e = |c| Reply::Error(c);
        assert_eq!(e(CommandError::Unknown).encode(&mut out).unwrap(), &[4, 0]);
        assert_eq!(
            e(CommandError::Invalid { min: 1, max: 1024 })
                .encode(&mut out)
                .unwrap(),
            &[4, 3, 1, 0x80, 0x08]
        );
        assert_eq!(
            e(CommandError::Refused {
                reason: Refusal::AlreadyRunning
            })
            .encode(&mut out)
            .unwrap(),
            &[4, 2, 0]
        );
    }

    #[test]
    fn trailing_bytes_and_garbage_are_errors() {
        assert_eq!(Request::decode(&[0x00, 0x00]), Err(DecodeError));
        assert_eq!(Request::decode(&[]), Err(DecodeError));
        assert_eq!(
            Request::decode(&[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(DecodeError)
        );
        for b in 0..=255u8 {
            let _ = Request::decode(&[b, b, b]);
            let _ = Reply::decode(&[b, b, b, b, b]);
        }
    }
}

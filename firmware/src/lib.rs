//! The logic of the dmapickle instrument firmware, separate from the board so that it is
//! unit-tested on the host (`--no-default-features --features std --target x86_64-unknown-linux-gnu`).
//!
//! The board application (`src/main.rs`, `thumbv7em-none-eabihf`, QEMU `mps2-an386`) reads its
//! [`config`] from the semihosting command line, runs the simulated [`adc`] over
//! `dmapickle-hal`'s buffers (the samples follow a [`waveform`] a test recomputes exactly),
//! encodes each block as a [`message`] and reports its [`stack`] high-water mark.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod adc;
pub mod config;
pub mod control;
pub mod copy;
pub mod message;
#[cfg(any(feature = "rtt", test))]
pub mod rtt_link;
pub mod sample_clock;
pub mod stack;
pub mod waveform;

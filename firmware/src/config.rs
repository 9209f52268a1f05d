//! Boot parameters: how the firmware runs, chosen without rebuilding.
//!
//! In QEMU they come from the semihosting command line (`-semihosting-config
//! enable=on,arg=dmapickle-firmware,arg=mode=shared,arg=n=256`); on a real board (feature `rtt`)
//! the defaults apply. Words are `key=value`; the first word (the program name) and empty words
//! are ignored.
//!
//! | key | values | default | meaning |
//! |---|---|---|---|
//! | `mode` | `inline`, `shared` | `inline` | arrays travel after each frame on UART0, or stay in PSRAM and only frames travel |
//! | `n` | 1 ..= [`MAX_BLOCK`] | 256 | rows per block: the arrays are `(n, 4)` int16 |
//! | `count` | 0 ..= 2^32-1 | 0 | messages to publish before exiting with status 0; 0 = run forever |
//! | `rate` | 1 ..= 10^7 | 64000 | simulated sample rate in Hz (rows per second); sets the SysTick period |
//! | `fault` | `none`, `panic`, `hardfault`, optionally `@N` | `none` | raise this fault instead of exiting cleanly (tests the failure path): after `N` messages with `@N`, else after `count` messages, or after the first one when `count=0` |
//! | `reboot` | 0 ..= [`MAX_REBOOTS`] | 0 | after `count` messages, reset the chip (SYSRESETREQ) this many times before exiting: each boot publishes `count` messages from seq 0 with `SEQ_RESTART` |
//! | `skew_ppm` | -[`MAX_SKEW_PPM`] ..= [`MAX_SKEW_PPM`] | 0 | the `t_us` clock runs this many parts per million fast (negative: slow) against the sample clock, as a crystal that far off would: `t_us = floor(nominal * (10^6 + skew_ppm) / 10^6)` (see [`BootConfig::t_us`]); tests the host's clock alignment |
//! | `drop` | `SEQ` or `SEQ+K` | none | never send block `SEQ` (or the `K` blocks from `SEQ`): each goes back to the pool and its frame number is used up unsent, so the host sees a gap in the frames' seq (tests loss reporting) |
//!
//! A word the firmware cannot use is a [`ConfigError`] whose message names the word and what the
//! key takes (`bad value in boot parameter `n=5000`: n takes 1..=1024`), or lists every key.
//!
//! ```
//! use dmapickle_firmware::config::{BootConfig, Placement};
//! let cfg = BootConfig::parse("dmapickle-firmware mode=shared n=128 count=1000").unwrap();
//! assert_eq!((cfg.placement, cfg.block, cfg.count), (Placement::Shared, 128, 1000));
//! assert!(BootConfig::parse("n=0").is_err());
//! ```

/// The largest block the firmware's static buffers hold, in rows.
pub const MAX_BLOCK: u32 = 1024;

/// The most resets `reboot=` may ask for.
pub const MAX_REBOOTS: u32 = 16;

/// The highest simulated sample rate accepted, in Hz.
pub const MAX_RATE_HZ: u32 = 10_000_000;

/// The largest clock skew `skew_ppm=` accepts either way (10%).
pub const MAX_SKEW_PPM: i32 = 100_000;

/// Where a message's array buffers go (boot parameter `mode=inline|shared`): into the link's
/// byte stream after their frame, or into a shared region the host maps, with only the frame on
/// the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Placement {
    /// Frame and array bytes go out over the link, one after the other.
    Inline,
    /// Arrays stay in a shared region (QEMU PSRAM backed by a host file); only frames go out,
    /// and a buffer is reused only after the host released it.
    Shared,
}

/// A deliberate failure, to prove that faults reach the host and fail the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Fault {
    /// Exit normally.
    None,
    /// `panic!` after the last message.
    Panic,
    /// Read from an unmapped address after the last message (a bus fault escalated to HardFault).
    HardFault,
}

/// Every key [`BootConfig::apply`] knows, in the order the docs list them.
pub const KEYS: [&str; 8] = [
    "mode", "n", "count", "rate", "fault", "reboot", "skew_ppm", "drop",
];

/// Everything the firmware reads at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BootConfig {
    /// Where the array buffers go (`mode=`).
    pub placement: Placement,
    /// Rows per block.
    pub block: u32,
    /// Messages to publish, 0 for no limit.
    pub count: u32,
    /// Sample rate in Hz.
    pub rate_hz: u32,
    /// Fault to raise at the end.
    pub fault: Fault,
    /// `fault=KIND@N`: raise it after `N` messages (`None`: see [`BootConfig::messages`]).
    pub fault_after: Option<u32>,
    /// Resets before the final exit (each boot publishes `count` messages).
    pub reboot: u32,
    /// How fast the `t_us` clock runs against the sample clock, in parts per million.
    pub skew_ppm: i32,
    /// `drop=SEQ+K`: `(SEQ, K)`, the seqs never published.
    pub drop: Option<(u32, u32)>,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            placement: Placement::Inline,
            block: 256,
            count: 0,
            rate_hz: 64_000,
            fault: Fault::None,
            fault_after: None,
            reboot: 0,
            skew_ppm: 0,
            drop: None,
        }
    }
}

/// A boot parameter that could not be used; carries the offending word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError<'a> {
    /// A word without `=`, or a key this firmware does not know.
    UnknownKey(&'a str),
    /// A known key with a value that is not allowed (not a number, out of range, unknown name).
    BadValue(&'a str),
}

impl core::fmt::Display for ConfigError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::UnknownKey(w) => {
                write!(f, "unknown boot parameter `{w}` (keys:")?;
                for key in KEYS {
                    write!(f, " {key}")?;
                }
                f.write_str(")")
            }
            ConfigError::BadValue(w) => {
                let key = w.split_once('=').map_or(*w, |(k, _)| k);
                write!(f, "bad value in boot parameter `{w}`: {key} takes ")?;
                match key {
                    "mode" => f.write_str("inline or shared"),
                    "n" => write!(f, "1..={MAX_BLOCK} (rows per block)"),
                    "count" => write!(f, "0..={} (0 = forever)", u32::MAX),
                    "rate" => write!(f, "1..={MAX_RATE_HZ} (Hz)"),
                    "fault" => {
                        f.write_str("none, panic or hardfault, optionally @N (after N messages)")
                    }
                    "reboot" => write!(f, "0..={MAX_REBOOTS}"),
                    "skew_ppm" => write!(f, "-{MAX_SKEW_PPM}..={MAX_SKEW_PPM} (ppm)"),
                    "drop" => f.write_str("SEQ or SEQ+K (K >= 1 seqs from SEQ)"),
                    _ => f.write_str("another value"),
                }
            }
        }
    }
}

impl BootConfig {
    /// Parses a whitespace-separated command line; the first word is the program name when it has
    /// no `=`.
    pub fn parse(line: &str) -> Result<BootConfig, ConfigError<'_>> {
        let mut cfg = BootConfig::default();
        for (i, word) in line.split_ascii_whitespace().enumerate() {
            if i == 0 && !word.contains('=') {
                continue;
            }
            cfg.apply(word)?;
        }
        Ok(cfg)
    }

    /// After how many messages the fault fires, `None` without a fault: `N` of `fault=KIND@N`,
    /// else `count`, or 1 when `count` is 0 (else `fault=panic` alone would never fire).
    pub fn fault_due(&self) -> Option<u32> {
        if self.fault == Fault::None {
            return None;
        }
        Some(
            self.fault_after
                .unwrap_or(if self.count > 0 { self.count } else { 1 }),
        )
    }

    /// Messages to publish in each boot, `None` for no limit: `count` (0 = no limit), or fewer
    /// when the fault is due earlier.
    pub fn messages(&self) -> Option<u32> {
        let count = (self.count > 0).then_some(self.count);
        match (count, self.fault_due()) {
            (Some(c), Some(due)) => Some(c.min(due)),
            (c, due) => c.or(due),
        }
    }

    /// The fault to raise once `published` messages went out (`Fault::None` if it is not due).
    pub fn fault_at(&self, published: u32) -> Fault {
        match self.fault_due() {
            Some(due) if published >= due => self.fault,
            _ => Fault::None,
        }
    }

    /// The `t_us` of block `seq`: [`crate::waveform::block_time_us`] of its first sample, run
    /// `skew_ppm` fast. Exact integer arithmetic (floor), the same in the Python tests.
    ///
    /// ```
    /// use dmapickle_firmware::config::BootConfig;
    /// let cfg = BootConfig::parse("n=256 rate=64000 skew_ppm=500").unwrap();
    /// assert_eq!(cfg.t_us(1000), 4_002_000); // 4 s of samples, 2 ms (500 ppm) early
    /// ```
    pub fn t_us(&self, seq: u32) -> u64 {
        let nominal = crate::waveform::block_time_us(seq, self.block, self.rate_hz);
        if self.skew_ppm == 0 {
            return nominal; // exactly what the scaling below gives, without its 128-bit division
        }
        let scaled = i128::from(nominal) * i128::from(1_000_000 + self.skew_ppm) / 1_000_000;
        scaled as u64
    }

    /// Whether block `seq` is one `drop=` leaves out.
    pub fn drops(&self, seq: u32) -> bool {
        self.drop
            .is_some_and(|(first, k)| seq.wrapping_sub(first) < k)
    }

    /// Applies one `key=value` word.
    pub fn apply<'a>(&mut self, word: &'a str) -> Result<(), ConfigError<'a>> {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ConfigError::UnknownKey(word));
        };
        let bad = ConfigError::BadValue(word);
        let number = |lo: u32, hi: u32| match value.parse::<u32>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => Err(bad),
        };
        match key {
            "mode" => {
                self.placement = match value {
                    "inline" => Placement::Inline,
                    "shared" => Placement::Shared,
                    _ => return Err(bad),
                }
            }
            "n" => self.block = number(1, MAX_BLOCK)?,
            "count" => self.count = number(0, u32::MAX)?,
            "rate" => self.rate_hz = number(1, MAX_RATE_HZ)?,
            "reboot" => self.reboot = number(0, MAX_REBOOTS)?,
            "skew_ppm" => {
                self.skew_ppm = match value.parse::<i32>() {
                    Ok(v) if (-MAX_SKEW_PPM..=MAX_SKEW_PPM).contains(&v) => v,
                    _ => return Err(bad),
                }
            }
            "drop" => {
                let (first, k) = value.split_once('+').unwrap_or((value, "1"));
                match (first.parse::<u32>(), k.parse::<u32>()) {
                    (Ok(first), Ok(k)) if k >= 1 => self.drop = Some((first, k)),
                    _ => return Err(bad),
                }
            }
            "fault" => {
                let (kind, after) = match value.split_once('@') {
                    Some((kind, n)) => (kind, Some(n.parse::<u32>().map_err(|_| bad)?)),
                    None => (value, None),
                };
                self.fault = match kind {
                    "none" if after.is_none() => Fault::None,
                    "panic" => Fault::Panic,
                    "hardfault" => Fault::HardFault,
                    _ => return Err(bad),
                };
                self.fault_after = after;
            }
            _ => return Err(ConfigError::UnknownKey(word)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_parameters() {
        assert_eq!(BootConfig::parse("").unwrap(), BootConfig::default());
        assert_eq!(
            BootConfig::parse("dmapickle-firmware").unwrap(),
            BootConfig::default()
        );
    }

    #[test]
    fn every_key() {
        let cfg =
            BootConfig::parse("fw mode=shared n=1024 count=7 rate=1000 fault=hardfault").unwrap();
        assert_eq!(
            cfg,
            BootConfig {
                placement: Placement::Shared,
                block: 1024,
                count: 7,
                rate_hz: 1000,
                fault: Fault::HardFault,
                fault_after: None,
                reboot: 0,
                skew_ppm: 0,
                drop: None,
            }
        );
        let cfg = BootConfig::parse("mode=inline fault=panic").unwrap();
        assert_eq!(
            (cfg.placement, cfg.fault),
            (Placement::Inline, Fault::Panic)
        );
    }

    #[test]
    fn errors_name_the_word() {
        assert_eq!(BootConfig::parse("n=0"), Err(ConfigError::BadValue("n=0")));
        assert_eq!(
            BootConfig::parse("fw n=1025"),
            Err(ConfigError::BadValue("n=1025"))
        );
        assert_eq!(
            BootConfig::parse("fw rate=0"),
            Err(ConfigError::BadValue("rate=0"))
        );
        assert_eq!(
            BootConfig::parse("fw count=-1"),
            Err(ConfigError::BadValue("count=-1"))
        );
        assert_eq!(
            BootConfig::parse("fw mode=dma"),
            Err(ConfigError::BadValue("mode=dma"))
        );
        assert_eq!(
            BootConfig::parse("fw speed=9"),
            Err(ConfigError::UnknownKey("speed=9"))
        );
        assert_eq!(
            BootConfig::parse("fw n=4 oops"),
            Err(ConfigError::UnknownKey("oops"))
        );
        assert_eq!(
            BootConfig::parse("fw reboot=17"),
            Err(ConfigError::BadValue("reboot=17"))
        );
        assert_eq!(BootConfig::parse("fw reboot=2").map(|c| c.reboot), Ok(2));
        let msg = std::format!("{}", ConfigError::BadValue("n=0"));
        assert!(msg.contains("n=0"), "{msg}");
    }

    #[test]
    fn errors_say_what_is_valid() {
        let show = |line| std::format!("{}", BootConfig::parse(line).unwrap_err());
        assert_eq!(
            show("fw n=5000"),
            "bad value in boot parameter `n=5000`: n takes 1..=1024 (rows per block)"
        );
        assert_eq!(
            show("fw speed=9"),
            "unknown boot parameter `speed=9` (keys: mode n count rate fault reboot skew_ppm drop)"
        );
        assert!(show("rate=0").ends_with("rate takes 1..=10000000 (Hz)"));
        assert!(show("reboot=99").ends_with("reboot takes 0..=16"));
        assert!(show("fault=boom").contains("none, panic or hardfault, optionally @N"));
        // The listed keys are exactly the ones `apply` takes.
        let sample = ["inline", "4", "1", "1000", "panic", "1", "-500", "3+2"];
        for (key, value) in KEYS.iter().zip(sample) {
            let word = std::format!("{key}={value}");
            assert!(BootConfig::default().apply(&word).is_ok(), "{word}");
        }
    }

    #[test]
    fn skew_scales_t_us_exactly() {
        let at = |line, seq| BootConfig::parse(line).unwrap().t_us(seq);
        assert_eq!(at("n=256 rate=64000", 1000), 4_000_000);
        assert_eq!(at("n=256 rate=64000 skew_ppm=500", 1000), 4_002_000);
        assert_eq!(at("n=256 rate=64000 skew_ppm=-500", 1000), 3_998_000);
        // floor(4_000 * 1.0000_07) = 4_000: below a microsecond, the nominal time.
        assert_eq!(at("n=256 rate=64000 skew_ppm=7", 1), 4_000);
        assert_eq!(at("n=1024 rate=1 skew_ppm=100000", u32::MAX), {
            let nominal = u64::from(u32::MAX) * 1024 * 1_000_000;
            (u128::from(nominal) * 1_100_000 / 1_000_000) as u64
        });
        assert_eq!(
            BootConfig::parse("skew_ppm=100001"),
            Err(ConfigError::BadValue("skew_ppm=100001"))
        );
        assert!(BootConfig::parse("skew_ppm=-100000").is_ok());
    }

    #[test]
    fn drop_leaves_out_the_seqs_named() {
        let cfg = BootConfig::parse("drop=17+3").unwrap();
        let dropped: std::vec::Vec<u32> = (0..40).filter(|&s| cfg.drops(s)).collect();
        assert_eq!(dropped, [17, 18, 19]);
        assert!(BootConfig::parse("drop=5").unwrap().drops(5));
        assert!(!BootConfig::parse("drop=5").unwrap().drops(6));
        assert!(!BootConfig::default().drops(0));
        for word in ["drop=5+0", "drop=x", "drop=5+", "drop=-1"] {
            assert_eq!(BootConfig::parse(word), Err(ConfigError::BadValue(word)));
        }
    }

    #[test]
    fn a_fault_fires_after_a_known_number_of_messages() {
        let messages = |line| BootConfig::parse(line).unwrap().messages();
        assert_eq!(messages(""), None, "no count, no fault: forever");
        assert_eq!(messages("count=10"), Some(10));
        assert_eq!(
            messages("fault=panic"),
            Some(1),
            "count=0: after the first message"
        );
        assert_eq!(messages("fault=panic count=5"), Some(5));
        assert_eq!(messages("fault=hardfault@3"), Some(3));
        assert_eq!(
            messages("count=2 fault=panic@3"),
            Some(2),
            "count ends the run first"
        );
        assert_eq!(messages("fault=panic@0"), Some(0), "before any message");
        let cfg = BootConfig::parse("fault=hardfault@7").unwrap();
        assert_eq!((cfg.fault, cfg.fault_after), (Fault::HardFault, Some(7)));
        assert_eq!(
            (cfg.fault_at(6), cfg.fault_at(7)),
            (Fault::None, Fault::HardFault)
        );
        let cfg = BootConfig::parse("count=2 fault=panic@3").unwrap();
        assert_eq!(cfg.fault_at(2), Fault::None, "never reached: a clean exit");
        for bad in ["fault=panic@", "fault=panic@x", "fault=none@2", "fault=@3"] {
            assert_eq!(BootConfig::parse(bad), Err(ConfigError::BadValue(bad)));
        }
    }
}

//! The source URI grammar, shared by every scheme:
//!
//! ```text
//! uri    = "-"                      standard input
//!        | NAME "://" rest          a scheme of the table in `scheme` parses `rest`
//!        | path                     a file (a recording or a FIFO)
//! rest   = path ["?" key "=" value *("&" key "=" value)]   (split_query)
//! ```
//!
//! Spelled like QEMU (`tcp:HOST:PORT`, `unix:PATH`) or like a sink (`tcp-listen:`), a source is
//! refused with the URI it should be, rather than opened as a file of that name.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::scheme::{file, stdin, NAMES};
use super::SourceSpec;

/// A source URI that could not be parsed: the URI and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUri {
    /// The URI as given.
    pub uri: String,
    /// What is wrong, and what would be right.
    pub reason: String,
}

impl fmt::Display for BadUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad source `{}`: {}", self.uri, self.reason)
    }
}

impl std::error::Error for BadUri {}

/// `path?k=v&k2=v2` as `(path, [(k, v), (k2, v2)])`; a key without `=` has an empty value.
/// For schemes that take parameters (`serial://`, `rtt://`).
pub fn split_query(rest: &str) -> (&str, Vec<(&str, &str)>) {
    match rest.split_once('?') {
        None => (rest, Vec::new()),
        Some((path, query)) => (
            path,
            query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                .collect(),
        ),
    }
}

/// `tcp://, unix://, ...`: every scheme of the table, for error messages.
fn scheme_list() -> String {
    let names: Vec<String> = NAMES
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| format!("{n}://"))
        .collect();
    names.join(", ")
}

impl FromStr for SourceSpec {
    type Err = BadUri;

    fn from_str(uri: &str) -> Result<Self, BadUri> {
        let bad = |reason: String| BadUri {
            uri: uri.to_string(),
            reason,
        };
        if uri == "-" {
            return Ok(SourceSpec::Stdin(stdin::Stdin));
        }
        let Some((scheme, rest)) = uri.split_once("://") else {
            if uri.is_empty() {
                return Err(bad(format!(
                    "empty; give a path, `-` or a URI ({})",
                    scheme_list()
                )));
            }
            if let Some(hint) = uri_hint(uri) {
                return Err(bad(hint));
            }
            return Ok(SourceSpec::File(file::File {
                path: PathBuf::from(uri),
            }));
        };
        match SourceSpec::parse_scheme(scheme, rest) {
            Some(parsed) => parsed.map_err(bad),
            None => Err(bad(format!(
                "unknown scheme; use {}, a path or `-`",
                scheme_list()
            ))),
        }
    }
}

/// Sink schemes (`dmapickle replay --to`) a user may also write without `//`.
const SINK_SCHEMES: [&str; 2] = ["tcp-listen", "unix-listen"];

/// For `tcp:127.0.0.1:4000` and the like (a known scheme without `//`): what to write instead.
/// `None` for anything else (a plain path). A file really named like that is `./tcp:...`.
pub fn uri_hint(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    let known = !scheme.is_empty() && (NAMES.contains(&scheme) || SINK_SCHEMES.contains(&scheme));
    if !known || rest.starts_with("//") {
        return None;
    }
    // QEMU options (`,server=on,wait=off`) belong to QEMU, not to dmapickle.
    let rest = rest.split(',').next().unwrap_or(rest);
    Some(format!(
        "did you mean `{scheme}://{rest}`? dmapickle spells sources and sinks as URIs \
         (QEMU writes `tcp:HOST:PORT`); a file of that name is `./{uri}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::scheme::file::File;
    use crate::source::scheme::rtt::Rtt;
    use crate::source::scheme::serial::{Serial, DEFAULT_BAUD};
    use crate::source::scheme::stdin::Stdin;
    use crate::source::scheme::tcp::Tcp;
    use crate::source::scheme::unix::Unix;

    #[test]
    fn parses_every_scheme() {
        let p = |s: &str| s.parse::<SourceSpec>().unwrap();
        assert_eq!(
            p("tcp://127.0.0.1:4000"),
            SourceSpec::Tcp(Tcp {
                addr: "127.0.0.1:4000".into()
            })
        );
        assert_eq!(
            p("unix:///tmp/x.sock"),
            SourceSpec::Unix(Unix {
                path: "/tmp/x.sock".into()
            })
        );
        assert_eq!(
            p("serial:///dev/ttyUSB0?baud=921600"),
            SourceSpec::Serial(Serial {
                path: "/dev/ttyUSB0".into(),
                baud: 921_600
            })
        );
        assert_eq!(
            p("serial:///dev/ttyACM0"),
            SourceSpec::Serial(Serial {
                path: "/dev/ttyACM0".into(),
                baud: DEFAULT_BAUD
            })
        );
        assert_eq!(
            p("file:///tmp/a.rec"),
            SourceSpec::File(File {
                path: "/tmp/a.rec".into()
            })
        );
        assert_eq!(
            p("rec/a.rec"),
            SourceSpec::File(File {
                path: "rec/a.rec".into()
            })
        );
        assert_eq!(p("-"), SourceSpec::Stdin(Stdin));
        assert_eq!(
            p("rtt://nRF52840_xxAA?probe=1366:1015&channel=1"),
            SourceSpec::Rtt(Rtt {
                chip: "nRF52840_xxAA".into(),
                probe: Some("1366:1015".into()),
                channel: 1,
                down: 0,
            })
        );
        assert_eq!(
            p("rtt://STM32F407VGTx?channel=1&down=2"),
            SourceSpec::Rtt(Rtt {
                chip: "STM32F407VGTx".into(),
                probe: None,
                channel: 1,
                down: 2,
            })
        );
    }

    #[test]
    fn bad_uris_say_what_is_expected() {
        for (uri, want) in [
            ("tcp://localhost", "tcp://HOST:PORT"),
            ("tcp://:80", "tcp://HOST:PORT"),
            ("unix://rel/path", "absolute path"),
            ("serial:///dev/ttyS0?baud=fast", "baud must be"),
            ("serial:///dev/ttyS0?parity=odd", "only baud"),
            (
                "http://x",
                "unknown scheme; use tcp://, unix://, serial://, file://, rtt://, a path or `-`",
            ),
            ("rtt://", "rtt://CHIP"),
            ("", "empty"),
        ] {
            let e = uri.parse::<SourceSpec>().unwrap_err().to_string();
            assert!(e.contains(want), "{uri}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn qemu_and_sink_spellings_get_the_uri_they_should_be() {
        for (uri, want) in [
            ("tcp:127.0.0.1:4000", "`tcp://127.0.0.1:4000`"),
            (
                "tcp:127.0.0.1:4000,server=on,wait=off",
                "`tcp://127.0.0.1:4000`",
            ),
            ("tcp-listen:127.0.0.1:4009", "`tcp-listen://127.0.0.1:4009`"),
            ("unix:/tmp/q.sock", "`unix:///tmp/q.sock`"),
        ] {
            let e = uri.parse::<SourceSpec>().unwrap_err().to_string();
            assert!(e.contains(want), "{uri}: {e}");
        }
        // Paths stay paths, a `./` prefix included.
        assert_eq!(
            "./tcp:1".parse::<SourceSpec>(),
            Ok(SourceSpec::File(File {
                path: "./tcp:1".into()
            }))
        );
        assert_eq!(
            "C:data.rec".parse::<SourceSpec>(),
            Ok(SourceSpec::File(File {
                path: "C:data.rec".into()
            }))
        );
    }
}

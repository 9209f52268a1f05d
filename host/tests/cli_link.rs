//! The `dmapickle` CLI on recordings and sources (issues 11 and 19): truncated recordings end
//! with the right counts, files are never reopened, a file without frames is an error, URI
//! spellings that would silently do the wrong thing are refused with the right URI, and waiting
//! for a source is said once.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::faults::clean_stream;
use common::streams::{f, fi, NONE};
use dmapickle_core::frame::{FLAG_NO_DATA_CRC, FLAG_SEQ_RESTART};
use dmapickle_core::Descriptor;

const BIN: &str = env!("CARGO_BIN_EXE_dmapickle");

fn dir(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dmapickle-cli-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run `dmapickle ARGS` in `cwd`; it must end within 20 s (a file re-read forever would not).
fn run(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("dmapickle {args:?} did not end");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn truncated_recordings_end_with_the_right_counts() {
    let d = dir("truncated");
    let (clean, frames) = clean_stream(0xC11, 20);
    // The last frame runs past the end of the file.
    let cut = frames[19].start + 30;
    std::fs::write(d.join("cut.rec"), &clean[..cut]).unwrap();
    let skipped = format!("skipped {} B", cut - frames[19].start);
    for extra in [&["--no-reconnect"][..], &[]] {
        let mut args = vec!["listen", "--quiet", "cut.rec"];
        args.extend_from_slice(extra);
        let (code, out, err) = run(&d, &args);
        assert_eq!(code, 0, "{err}");
        let last = out.lines().last().unwrap();
        assert!(
            last.starts_with("final (source ended): 19 msgs, "),
            "{last}"
        );
        assert!(
            last.contains("corrupt 1, lost 0, refused 0, restarts 1, seq jumps 0"),
            "{last}"
        );
        assert!(
            last.contains(&skipped) && last.contains(&format!("read {cut} B")),
            "{last}"
        );
        assert!(
            !err.contains("connected"),
            "a file is not a connection: {err}"
        );
    }
    let (code, out, err) = run(&d, &["inspect", "cut.rec"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("message seq=").count(), 19);
    assert!(out.contains(&format!("stream: 19 delivered, corrupt 1, lost 0, refused 0, restarts 1, seq jumps 0, {skipped}, read {cut} B")), "{out}");
    // record reads the file once (never reopened) and keeps every byte; replay sends it back.
    let (code, out, err) = run(&d, &["record", "cut.rec", "copy.rec"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("recorded {cut} B to copy.rec")),
        "{out}"
    );
    assert_eq!(std::fs::read(d.join("copy.rec")).unwrap(), &clean[..cut]);
    let (code, _, err) = run(&d, &["replay", "copy.rec", "--to", "file://again.rec"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(d.join("again.rec")).unwrap(), &clean[..cut]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_recording_taken_mid_stream_is_inspected_as_one() {
    // `record` joined the link in the middle of a frame: the file starts inside frame 0, so
    // not with the sync word; inspect still reads it as a recording and counts what it skips.
    let d = dir("midstream");
    let (clean, frames) = clean_stream(0xC12, 6);
    let start = frames[0].start + 7;
    let mid = &clean[start..];
    std::fs::write(d.join("mid.rec"), mid).unwrap();
    let (code, out, err) = run(&d, &["inspect", "mid.rec"]);
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(out.matches("message seq=").count(), 5, "{out}");
    let skipped = frames[1].start - start;
    assert!(
        out.contains(&format!(
            "stream: 5 delivered, corrupt 0, lost 0, refused 0, restarts 0, seq jumps 0, skipped {skipped} B, read {} B",
            mid.len()
        )),
        "{out}"
    );
    // A pickle file is still a pickle, even one that holds the sync word's bytes.
    let mut pickle = b"\x80\x05C\x04".to_vec();
    pickle.extend_from_slice(&dmapickle_core::frame::SYNC);
    pickle.extend_from_slice(b"\x94.");
    std::fs::write(d.join("p.pkl"), &pickle).unwrap();
    let (code, out, err) = run(&d, &["inspect", "p.pkl"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        out.contains("SHORT_BINBYTES") && !out.contains("message seq="),
        "{out}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_file_without_dmapickle_frames_is_an_error() {
    let d = dir("noframes");
    std::fs::write(d.join("notes.md"), "# not a recording\n".repeat(100)).unwrap();
    for cmd in ["listen", "record"] {
        let mut args = vec![cmd, "notes.md"];
        if cmd == "record" {
            args.push("out.rec");
        }
        let (code, _, err) = run(&d, &args);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(
            err.contains("notes.md: no dmapickle frames found (1800 B read"),
            "{cmd}: {err}"
        );
        assert!(!err.contains("connected"), "{err}");
    }
    // Frames of another version are frames: refused, but the file is a dmapickle stream.
    let mut v2 = f(0, 1, NONE);
    v2[4] = 2;
    let crc = dmapickle_core::frame::crc32c(&v2[..20]).to_le_bytes();
    v2[20..24].copy_from_slice(&crc);
    std::fs::write(d.join("v2.rec"), &v2).unwrap();
    let (code, out, err) = run(&d, &["listen", "v2.rec"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 msgs") && out.contains("refused 1"), "{out}");
    assert!(
        err.contains("unsupported") || err.contains("version"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn uri_spellings_that_would_do_the_wrong_thing_get_the_right_uri() {
    let d = dir("uris");
    std::fs::write(d.join("r.rec"), f(FLAG_SEQ_RESTART, 0, NONE)).unwrap();
    let (code, _, err) = run(
        &d,
        &["replay", "r.rec", "--to", "tcp-listen:127.0.0.1:4009"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("did you mean `tcp-listen://127.0.0.1:4009`?"),
        "{err}"
    );
    assert!(
        !d.join("tcp-listen:127.0.0.1:4009").exists(),
        "a file of that name was written"
    );
    let (code, _, err) = run(&d, &["listen", "tcp:127.0.0.1:4000"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("did you mean `tcp://127.0.0.1:4000`?"),
        "{err}"
    );
    for bad in ["http://x", "rtt://STM32F407VGTx"] {
        let (code, _, err) = run(&d, &["replay", "r.rec", "--to", bad]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("tcp-listen://HOST:PORT") && !err.contains("rtt://,"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[cfg(not(feature = "probe-rs"))]
#[test]
fn rtt_without_probe_rs_exits_2_at_once() {
    let (code, _, err) = run(&std::env::temp_dir(), &["listen", "rtt://STM32F407VGTx"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`probe-rs` feature"), "{err}");
}

#[test]
fn a_refused_connection_is_waited_for_and_said_once() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let mut child = Command::new(BIN)
        .args(["listen", &format!("tcp://{addr}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Backoff 50, 100, 200, 400, 800 ms, then every 2 s: six attempts or more in 3 s.
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    let want = format!("dmapickle: waiting for tcp://{addr} (");
    assert_eq!(err.matches(&want).count(), 1, "{err}");
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("disconnected"), "it never connected: {err}");
}

#[test]
fn trust_link_and_limits_on_the_command_line() {
    let d = dir("trust");
    let mut rec = fi(
        FLAG_NO_DATA_CRC | FLAG_SEQ_RESTART,
        0,
        b"\x80\x05\x97.",
        &[(Descriptor::new(1, 0, 4), b"abcd")],
    );
    rec.extend_from_slice(&f(0, 1, NONE));
    std::fs::write(d.join("nd.rec"), &rec).unwrap();
    let (code, out, err) = run(&d, &["listen", "nd.rec"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 msgs") && out.contains("refused 1"), "{out}");
    assert!(err.contains("--trust-link"), "{err}");
    let (_, out, _) = run(&d, &["listen", "--trust-link", "nd.rec"]);
    assert!(
        out.contains("final (source ended): 2 msgs") && out.contains("refused 0"),
        "{out}"
    );
    // The second frame is 36 bytes: --max-frame 36 takes it, 35 does not (inclusive limits).
    let (_, out, _) = run(
        &d,
        &["listen", "--trust-link", "--max-frame", "36", "nd.rec"],
    );
    assert!(
        out.contains("final (source ended): 1 msgs") && out.contains("refused 1"),
        "{out}"
    );
    let (_, out, _) = run(
        &d,
        &["listen", "--trust-link", "--max-frame", "35", "nd.rec"],
    );
    assert!(
        out.contains("final (source ended): 0 msgs") && out.contains("refused 2"),
        "{out}"
    );
    let (_, out, _) = run(
        &d,
        &["inspect", "--trust-link", "--max-buffers", "0", "nd.rec"],
    );
    assert!(
        out.contains("stream: 1 delivered") && out.contains("refused 1"),
        "{out}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

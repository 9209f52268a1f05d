//! The document is the specification: `tests/wire/spec_decoder.py`, a second reader written in
//! Python from docs/wire-format.md alone, must report exactly what the Rust `FrameReader` does
//! (every message, refusal and counter) on every rule's stream and on the fault-injection
//! streams.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::faults::{clean_stream, corrupt};
use common::streams::{cases, read_all, reader};
use dmapickle_host::ReaderConfig;

fn python() -> PathBuf {
    std::env::var_os("DMAPICKLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into())
}

/// The spec decoder's lines for `stream` read with `config` (and region 2 from `region`).
fn spec_lines(stream: &Path, config: &ReaderConfig, region: Option<&Path>) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/wire/spec_decoder.py");
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .arg(stream)
        .args(["--max-frame", &config.max_frame.to_string()])
        .args(["--max-pickle", &config.max_pickle.to_string()])
        .args(["--max-buffers", &config.max_buffers.to_string()]);
    if config.trust_link {
        cmd.arg("--trust-link");
    }
    if let Some(r) = region {
        cmd.arg("--region").arg(format!("2={}", r.display()));
    }
    let out = cmd
        .output()
        .expect("run python3 tests/wire/spec_decoder.py");
    assert!(
        out.status.success(),
        "spec decoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn agree(name: &str, bytes: &[u8], config: &ReaderConfig, region: Option<&[u8]>, dir: &Path) {
    let stream = dir.join(format!("{name}.bin"));
    std::fs::write(&stream, bytes).unwrap();
    let region_path = region.map(|r| {
        let p = dir.join(format!("{name}.region"));
        std::fs::write(&p, r).unwrap();
        p
    });
    let (_, rust) = read_all(reader(bytes, config, region_path.as_deref()));
    let spec = spec_lines(&stream, config, region_path.as_deref());
    if let Some(i) = (0..rust.len().max(spec.len())).find(|&i| rust.get(i) != spec.get(i)) {
        panic!(
            "{name}: the Rust reader and the spec decoder differ at line {i}:\n  rust: {:?}\n  spec: {:?}",
            rust.get(i),
            spec.get(i)
        );
    }
    println!(
        "{name}: {} lines agree; {}",
        rust.len(),
        rust.last().unwrap()
    );
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dmapickle-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_spec_decoder_agrees_on_every_rule() {
    let dir = temp_dir("spec-rules");
    for case in cases() {
        agree(
            case.name,
            &case.bytes,
            &case.config,
            case.region.as_deref(),
            &dir,
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_spec_decoder_agrees_on_the_fault_injection_streams() {
    let dir = temp_dir("spec-faults");
    let (clean, frames) = clean_stream(0xFA_0175, 1_000);
    for seed in [1u64, 2, 3] {
        let (stream, _, damage) = corrupt(&clean, &frames, seed);
        println!("seed {seed}: {damage:?}");
        agree(
            &format!("faults-{seed}"),
            &stream,
            &ReaderConfig::default(),
            None,
            &dir,
        );
    }
    // Tight limits: the large messages are refused, and their payloads scanned as bytes.
    let (stream, _, _) = corrupt(&clean, &frames, 4);
    let limits = ReaderConfig {
        max_frame: 16 << 10,
        max_pickle: 300,
        max_buffers: 2,
        ..ReaderConfig::default()
    };
    agree("faults-limits", &stream, &limits, None, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

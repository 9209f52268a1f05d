//! Shared by the cross-language tests: finding the project's Python venvs, writing a batch of
//! encoded messages for `tests/python/check_encoded.py`, and running that checker on it.
//!
//! Batch format: `DMAPKL01`, a u32 count, then per message: the pickle, a u32 buffer count, each
//! buffer, and the JSON description of the expected value; every byte string is a u32 length and
//! the bytes; all integers little-endian.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

/// The Python venvs every cross-language test runs under: (env var, venv folder, numpy version
/// prefix).
pub const PYTHONS: [(&str, &str, &str); 2] = [
    ("DMAPICKLE_PYTHON", "np2", "2."),
    ("DMAPICKLE_PYTHON_NP1", "np1", "1.26"),
];

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python named by `var`, else the project's venv `venv`; fails (never skips) if neither exists.
pub fn python(var: &str, venv: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let path = repo_root().join(".venv").join(venv).join("bin/python");
    assert!(
        path.exists(),
        "{var} is not set and {} is missing: run scripts/setup.sh",
        path.display()
    );
    path
}

/// Messages for one run of the Python checker.
#[derive(Default)]
pub struct Batch {
    count: u32,
    body: Vec<u8>,
}

impl Batch {
    /// Adds one message: its pickle, its out-of-band buffers in order, and what it must load to.
    pub fn push<B: AsRef<[u8]>>(&mut self, pickle: &[u8], buffers: &[B], expected: &Json) {
        self.count += 1;
        put(&mut self.body, pickle);
        self.body
            .extend_from_slice(&(buffers.len() as u32).to_le_bytes());
        for data in buffers {
            put(&mut self.body, data.as_ref());
        }
        put(&mut self.body, expected.to_string().as_bytes());
    }

    /// Writes the batch file.
    pub fn write(&self, path: &Path) {
        let mut file = b"DMAPKL01".to_vec();
        file.extend_from_slice(&self.count.to_le_bytes());
        file.extend_from_slice(&self.body);
        std::fs::write(path, file).unwrap();
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Runs `tests/python/check_encoded.py` on `batch` with `python`: the checker's JSON summary, or
/// its stderr and stdout when it failed.
pub fn run_checker(python: &Path, batch: &Path) -> Result<Json, (String, String)> {
    let script = repo_root().join("tests/python/check_encoded.py");
    let output = Command::new(python)
        .arg(&script)
        .arg(batch)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (run scripts/setup.sh)",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err((stderr, stdout));
    }
    Ok(serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad summary {stdout:?}: {e}")))
}

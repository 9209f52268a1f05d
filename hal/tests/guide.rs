//! The crate docs' guide (hal/README.md, "From `cargo add` to numpy") and the firmware built from
//! it (tests/minimal-firmware, run in QEMU by tests/hil/hil_minimal.py) stay one story: the
//! guide's dependency lines are the firmware's, and its `main.rs` stays under 80 lines.

// Reads files, which miri's isolation does not allow (and there is no unsafe code here).
#![cfg(not(miri))]

use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_guides_dependencies_are_the_minimal_firmwares() {
    let readme = read("README.md");
    let start = readme.find("```toml\n").expect("a toml block in README.md") + 8;
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let manifest = read("../tests/minimal-firmware/Cargo.toml");
    let deps: Vec<&str> = block.lines().filter(|l| l.contains(" = ")).collect();
    assert!(deps.len() >= 5, "{block}");
    for line in deps {
        assert!(
            manifest.lines().any(|m| m == line),
            "README's `{line}` is not in tests/minimal-firmware/Cargo.toml"
        );
    }
}

#[test]
fn the_minimal_firmware_is_short_and_uses_only_the_public_crates() {
    let main = read("../tests/minimal-firmware/src/main.rs");
    let lines = main.lines().count();
    assert!(
        lines < 80,
        "tests/minimal-firmware/src/main.rs has {lines} lines"
    );
    assert!(!main.contains("dmapickle_firmware") && !main.contains("unsafe"));
    let manifest = read("../tests/minimal-firmware/Cargo.toml");
    assert!(!manifest.contains("dmapickle-firmware"));
}

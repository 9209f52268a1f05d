//! The `dmapickle check` / `inspect` command-line contract: output lines, exit codes, buffer
//! files found beside the pickle, `--profile` and `--allow`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dmapickle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmapickle"))
        .args(args)
        .output()
        .expect("run dmapickle")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("dmapickle-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `[PickleBuffer]` of one out-of-band buffer, as CPython writes it.
const ONE_BUFFER: &[u8] = b"\x80\x05]\x94\x97a.";
/// `os.system('id')`.
const EVIL: &[u8] = b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.";
/// A call of `mypkg.Reading(1)` followed by BUILD with a dict.
const CUSTOM: &[u8] = b"\x80\x04\x8c\x05mypkg\x8c\x07Reading\x93K\x01\x85R}b.";

#[test]
fn check_prints_one_line_per_file_and_exits_by_the_worst_result() {
    let d = Dir::new("check");
    let ok = d.file("ok.pkl", ONE_BUFFER);
    d.file("ok.buf0", b"0123");
    let evil = d.file("evil.pkl", EVIL);

    let o = dmapickle(&["check", &ok]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), format!("{ok}: ok\n"));

    let o = dmapickle(&["check", &ok, &evil]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        format!(
            "{ok}: ok\n{evil}: rejected: byte 14, STACK_GLOBAL: global not in the allowlist: \
             os.system (to trust it: --allow os:system)\n"
        )
    );
}

#[test]
fn buffers_beside_the_pickle_are_counted() {
    let d = Dir::new("buffers");
    let p = d.file("msg.pkl", ONE_BUFFER);
    // no msg.buf0: the NEXT_BUFFER has nothing to refer to
    let o = dmapickle(&["check", &p]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("more NEXT_BUFFER than out-of-band buffers"));
    d.file("msg.buf0", b"x");
    d.file("msg.buf1", b"y");
    let o = dmapickle(&["check", &p]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("fewer NEXT_BUFFER than out-of-band buffers"));
    std::fs::remove_file(Path::new(&d.0).join("msg.buf1")).unwrap();
    assert_eq!(dmapickle(&["check", &p]).status.code(), Some(0));
}

#[test]
fn usage_and_io_errors_exit_2() {
    let d = Dir::new("errors");
    let missing = d.0.join("missing.pkl");
    let o = dmapickle(&["check", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty());
    let p = d.file("none.pkl", b"\x80\x05N.");
    assert_eq!(
        dmapickle(&["check", "--profile", "lenient", &p])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(dmapickle(&["check"]).status.code(), Some(2));
    assert_eq!(
        dmapickle(&["check", "--allow", "nocolon", &p])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn profile_and_allow() {
    let d = Dir::new("profile");
    // CPython's memoized list is general, not strict
    let p = d.file("list.pkl", b"\x80\x05]\x94K\x01a.");
    assert_eq!(dmapickle(&["check", &p]).status.code(), Some(0));
    assert_eq!(
        dmapickle(&["check", "--profile", "general", &p])
            .status
            .code(),
        Some(0)
    );
    let o = dmapickle(&["check", "--profile", "strict", &p]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("byte 3, MEMOIZE: opcode not allowed in this profile"));

    let c = d.file("custom.pkl", CUSTOM);
    assert_eq!(dmapickle(&["check", &c]).status.code(), Some(1));
    assert_eq!(
        dmapickle(&["check", "--allow", "mypkg:Reading", &c])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn inspect_disassembles_and_summarizes() {
    let d = Dir::new("inspect");
    let p = d.file("one.pkl", ONE_BUFFER);
    d.file("one.buf0", b"0123");
    let o = dmapickle(&["inspect", &p]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "     0: PROTO            5");
    assert_eq!(lines[2], "     3: MEMOIZE          (as 0)");
    assert_eq!(lines[3], "     4: NEXT_BUFFER");
    assert!(out.contains("summary: list[buffer 0 (4 B)]\n"), "{out}");

    let e = d.file("evil.pkl", EVIL);
    let o = dmapickle(&["inspect", &e]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("     2: SHORT_BINUNICODE 'os'"));
    assert!(stdout(&o).contains("rejected: byte 14, STACK_GLOBAL: global not in the allowlist"));
}

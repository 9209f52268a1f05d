//! The validator the live paths (CLI `listen`/`record`/`bridge`, Python's `dmapickle.open`) give
//! the frame reader.
//!
//! One [`Checker`] per stream, with the default capacities (enough for any CPython pickle of plain
//! data). Its workspace is allocated once and never cleared in full: each validation clears only
//! the memo entries it wrote, so a message costs what its own pickle uses, however large the
//! capacities are.

use dmapickle_core::Profile;

use crate::stream::Validator;
use crate::validation::Checker;

/// A frame-reader validator for `profile`, also allowing the `(module, name)` globals in `allow`,
/// with the default limits.
pub fn validator(profile: Profile, allow: &[(String, String)]) -> Validator {
    let mut checker = Checker::new(profile);
    for (m, n) in allow {
        checker.allow(m, n);
    }
    checked(checker)
}

/// A frame-reader validator that runs `checker` (its profile, allowlist and limits).
pub fn checked(mut checker: Checker) -> Validator {
    Box::new(
        move |pickle: &[u8], lens: &[usize]| match checker.check(pickle, lens) {
            Ok(_) => Ok(()),
            Err(e) => Err(checker.explain(&e, pickle)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_cpython_pickles_still_pass_and_hostile_ones_fail() {
        let mut v = validator(Profile::General, &[]);
        // list(range(300)) with protocol 2: MARK + 300 BININT2/BININT1, one APPENDS batch.
        let mut p = b"\x80\x02]q\x00(".to_vec();
        for i in 0..300u16 {
            p.push(b'M');
            p.extend_from_slice(&i.to_le_bytes());
        }
        p.extend_from_slice(b"e.");
        assert_eq!(v(&p, &[]), Ok(()));
        // 300 memoized strings (BINPUT 0..255 then LONG_BINPUT) need the full memo.
        let mut p = b"\x80\x02](".to_vec();
        for i in 0..300u32 {
            p.extend_from_slice(b"X\x01\x00\x00\x00a");
            p.push(b'r');
            p.extend_from_slice(&i.to_le_bytes());
        }
        p.extend_from_slice(b"e.");
        assert_eq!(v(&p, &[]), Ok(()));
        let evil = b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.";
        assert_eq!(
            v(evil, &[]),
            Err("byte 14, STACK_GLOBAL: global not in the allowlist: os.system (to trust it: --allow os:system)".to_string())
        );
    }
}

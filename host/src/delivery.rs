//! The validator the live paths (CLI `listen`/`record`/`bridge`, Python's `dmapickle.open`) give
//! the frame reader.
//!
//! A [`Checker`] clears its whole memo each time it validates, and its default memo holds 65,536
//! entries so that any CPython pickle fits. Paying that per message would cap delivery at about a
//! thousand messages per second, so messages are first validated with a small workspace (enough
//! for everything the device encoder writes and for typical CPython pickles), and only a pickle
//! refused for lack of room (stack or memo) is validated again with the full one.

use dmapickle_core::reason::Reason;
use dmapickle_core::{Error, Profile};

use crate::stream::Validator;
use crate::validation::Checker;

/// Stack entries of the first, small workspace.
pub const SMALL_STACK: usize = 128;
/// Memo entries of the first, small workspace (cleared per message, so kept small: the device
/// encoder memoizes only its one or two globals).
pub const SMALL_MEMO: usize = 32;

/// A frame-reader validator for `profile`, also allowing the `(module, name)` globals in `allow`.
pub fn validator(profile: Profile, allow: &[(String, String)]) -> Validator {
    let allow = allow.to_vec();
    let make = move |stack, memo| {
        let mut c = Checker::with_capacity(profile, stack, memo);
        for (m, n) in &allow {
            c.allow(m, n);
        }
        c
    };
    let mut small = make(SMALL_STACK, SMALL_MEMO);
    let mut full: Option<Checker> = None;
    let full_make = move || {
        make(
            crate::validation::DEFAULT_STACK,
            crate::validation::DEFAULT_MEMO,
        )
    };
    Box::new(move |pickle: &[u8], lens: &[usize]| {
        match small.check(pickle, lens) {
            Ok(_) => Ok(()),
            Err(Error::Rejected {
                reason: Reason::StackTooDeep | Reason::MemoTooLarge,
                ..
            }) => full
                .get_or_insert_with(&full_make)
                .check(pickle, lens)
                .map(|_| ()),
            Err(e) => Err(e),
        }
        .map_err(|e| e.to_string())
    })
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
            Err("byte 14, STACK_GLOBAL: global not in the allowlist".to_string())
        );
    }
}

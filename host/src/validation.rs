//! Validating pickles on the host: a reusable [`Checker`] that owns the validator's stack and
//! memo (heap-allocated once, never cleared in full again: each validation costs only what the
//! pickle uses) and remembers the caller's extra allowed globals.
//!
//! ```
//! use dmapickle_host::validation::Checker;
//! use dmapickle_core::Profile;
//! let mut checker = Checker::new(Profile::General);
//! // [1, 2] from CPython, protocol 2
//! let ok = checker.check(b"\x80\x02]q\x00(K\x01K\x02e.", &[]).unwrap();
//! assert_eq!(ok.protocol, 2);
//! let (_, summary) = checker.summarize(b"\x80\x02]q\x00(K\x01K\x02e.", &[]).unwrap();
//! assert_eq!(summary, "list[int, int]");
//! ```

use dmapickle_core::validate::{Limit, Limits, OwnedWorkspace, Validated, Workspace};
use dmapickle_core::{Error, Profile, Reason, Validator};

/// Default abstract stack depth: CPython batches 1000 items per APPENDS/SETITEMS, so a few
/// thousand slots hold any CPython pickle of plain data.
pub const DEFAULT_STACK: usize = 4096;
/// Default memo capacity to start with (CPython memoizes every str and container at protocols
/// 2 and 3); a pickle that uses more grows it, up to [`DEFAULT_MAX_MEMO`].
pub const DEFAULT_MEMO: usize = 1 << 14;
/// Default largest memo: a pickle may memoize this many objects (the memo takes about 220 B a
/// slot while it is that large; the load itself is charged 16 B a memo index).
pub const DEFAULT_MAX_MEMO: usize = 1 << 20;
/// Default largest key table: keys whose hash the pickle chooses (floats, tuples of ints, ...)
/// that one pickle may hold when it has more than `max_collisions` of them (24 B each, so at
/// most 96 MiB; the table starts at 1024 entries and grows only for pickles that need it).
pub const DEFAULT_MAX_KEYS: usize = 1 << 22;

/// Why the validator refused a pickle, kept as data to the edge: the CLI's `rejected:` line,
/// [`ReadError::Invalid`](crate::ReadError::Invalid), Python's `RejectedError` (whose
/// `.offset`, `.opcode`, `.reason` and `.limit` are these fields).
///
/// Displayed as one line naming the offset, the opcode and the reason, and for a refused
/// global what would allow it:
///
/// ```
/// use dmapickle_host::validation::Checker;
/// use dmapickle_core::{validate::Limit, Profile, Reason};
/// let mut checker = Checker::new(Profile::General);
/// // os.system('id'), protocol 5: STACK_GLOBAL is at byte 14.
/// let evil = b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.";
/// let r = checker.check(evil, &[]).unwrap_err();
/// assert_eq!((r.offset(), r.opcode_name()), (Some(14), Some("STACK_GLOBAL")));
/// assert_eq!(r.reason(), Some(Reason::GlobalNotAllowed));
/// assert_eq!(r.global(), Some(("os", "system")));
/// assert_eq!(r.limit(), None);
/// assert_eq!(
///     r.to_string(),
///     "byte 14, STACK_GLOBAL: global not in the allowlist: os.system (to trust it: --allow os:system)"
/// );
/// // [[[]]] nested one level deeper than allowed: the bound, the value found and the limit.
/// checker.limits(dmapickle_core::validate::Limits { max_depth: 2, ..Default::default() });
/// let r = checker.check(b"\x80\x04]]]aa.", &[]).unwrap_err();
/// assert_eq!(r.limit(), Some((Limit::Depth, 3, 2)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    error: Error,
    global: Option<(String, String)>,
}

impl Rejection {
    /// The core validator's error (always [`Error::Rejected`]).
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// Byte offset of the refused opcode in the pickle (`pickletools.dis`'s offsets).
    pub fn offset(&self) -> Option<usize> {
        match self.error {
            Error::Rejected { at, .. } => Some(at),
            _ => None,
        }
    }

    /// The byte at [`offset`](Self::offset): the refused opcode.
    pub fn opcode(&self) -> Option<u8> {
        match self.error {
            Error::Rejected { opcode, .. } => Some(opcode),
            _ => None,
        }
    }

    /// The opcode's name as `pickletools` spells it (`STACK_GLOBAL`); `None` when the byte is
    /// not an opcode ([`Reason::UnknownOpcode`]).
    pub fn opcode_name(&self) -> Option<&'static str> {
        dmapickle_core::opcode::Opcode::from_byte(self.opcode()?).map(|op| op.name())
    }

    /// Why.
    pub fn reason(&self) -> Option<Reason> {
        match self.error {
            Error::Rejected { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// For a bound of [`Limits`] exceeded: which, the value found (at least) and the limit.
    pub fn limit(&self) -> Option<(Limit, u64, u64)> {
        match self.reason()? {
            Reason::Limit { limit, found, max } => Some((limit, found, max)),
            _ => None,
        }
    }

    /// For [`Reason::GlobalNotAllowed`]: the module and name refused.
    pub fn global(&self) -> Option<(&str, &str)> {
        self.global
            .as_ref()
            .map(|(module, name)| (module.as_str(), name.as_str()))
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.global() {
            Some((module, name)) => write!(
                f,
                "{}: {module}.{name} (to trust it: --allow {module}:{name})",
                self.error
            ),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for Rejection {}

/// The caller's extra globals: owned strings, and the `(&str, &str)` pairs the core validator
/// borrows, built once when a global is added rather than for every pickle checked.
#[derive(Debug, Default)]
struct Allowlist {
    /// Borrows from `owned`'s heap strings; declared first, so dropped before them.
    pairs: Vec<(&'static str, &'static str)>,
    /// Never shrunk or changed in place: each string's heap bytes stay where they are for as
    /// long as the checker lives (moving a `Box` moves the pointer, not the bytes).
    owned: Vec<(Box<str>, Box<str>)>,
}

impl Allowlist {
    fn push(&mut self, module: &str, name: &str) {
        let entry: (Box<str>, Box<str>) = (module.into(), name.into());
        // SAFETY: the two strings live on the heap until `owned` drops them, which happens
        // only when the `Allowlist` drops (never earlier: entries are only ever added), after
        // `pairs`. The `'static` references never leave this type with that lifetime: `pairs()`
        // hands them out reborrowed for `&self`.
        let pair: (&'static str, &'static str) =
            unsafe { (&*(&*entry.0 as *const str), &*(&*entry.1 as *const str)) };
        self.owned.push(entry);
        self.pairs.push(pair);
    }

    fn pairs(&self) -> &[(&str, &str)] {
        &self.pairs
    }
}

/// A validator with its own workspace; reuse it for every message.
#[derive(Debug)]
pub struct Checker {
    profile: Profile,
    allowed: Allowlist,
    limits: Limits,
    max_keys: usize,
    max_memo: usize,
    workspace: OwnedWorkspace,
    /// Where the last rejection's refused global is in its pickle.
    refused: Option<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl Checker {
    /// The checker every path builds (the CLI's `--profile`/`--allow`/`--max-*`, the live
    /// readers, Python's `check`, `read_frame` and `open`): `profile`, also allowing the
    /// `(module, name)` globals in `allow`, enforcing `limits`, with the default capacities.
    pub fn configured(profile: Profile, allow: &[(String, String)], limits: Limits) -> Self {
        let mut c = Self::new(profile);
        c.limits(limits);
        for (module, name) in allow {
            c.allow(module, name);
        }
        c
    }

    /// A checker with the default stack and memo capacities.
    pub fn new(profile: Profile) -> Self {
        Self::with_capacity(profile, DEFAULT_STACK, DEFAULT_MEMO)
    }

    /// A checker whose abstract stack holds `stack` entries and memo `memo` entries.
    pub fn with_capacity(profile: Profile, stack: usize, memo: usize) -> Self {
        Checker {
            profile,
            allowed: Allowlist::default(),
            limits: Limits::DEFAULT,
            max_keys: DEFAULT_MAX_KEYS,
            max_memo: memo.max(DEFAULT_MAX_MEMO),
            refused: None,
            workspace: OwnedWorkspace::new(stack, memo),
        }
    }

    /// Also allows the global `module.name` (trusted: see `dmapickle_core::validate`).
    pub fn allow(&mut self, module: &str, name: &str) -> &mut Self {
        self.allowed.push(module, name);
        self
    }

    /// Rejects pickles longer than `max_len` bytes.
    pub fn max_len(&mut self, max_len: usize) -> &mut Self {
        self.limits.max_len = max_len;
        self
    }

    /// Enforces these limits (default [`Limits::DEFAULT`]).
    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// The limits enforced.
    pub fn current_limits(&self) -> Limits {
        self.limits
    }

    /// Largest memo the checker may grow to (default [`DEFAULT_MAX_MEMO`]).
    pub fn max_memo(&mut self, max_memo: usize) -> &mut Self {
        self.max_memo = max_memo;
        self
    }

    /// Largest key table the checker may grow to (default [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(&mut self, max_keys: usize) -> &mut Self {
        self.max_keys = max_keys;
        self
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Validates `pickle` with out-of-band buffers of the given lengths, in order.
    pub fn check(&mut self, pickle: &[u8], buffer_lens: &[usize]) -> Result<Validated, Rejection> {
        self.run(|v, ws| v.validate(pickle, buffer_lens, ws))
            .map_err(|e| self.rejection(e, pickle))
    }

    /// Validates and returns a one-line summary of what the pickle builds.
    pub fn summarize(
        &mut self,
        pickle: &[u8],
        buffer_lens: &[usize],
    ) -> Result<(Validated, String), Rejection> {
        let mut summary = String::new();
        let validated = self
            .run(|v, ws| v.summarize(pickle, buffer_lens, ws, &mut summary))
            .map_err(|e| self.rejection(e, pickle))?;
        Ok((validated, summary))
    }

    /// `error`, the validator's refusal of `pickle`, with the global it refused (if any).
    fn rejection(&self, error: Error, pickle: &[u8]) -> Rejection {
        let global = match error {
            Error::Rejected {
                reason: Reason::GlobalNotAllowed,
                ..
            } => self.refused.clone().and_then(|(module, name)| {
                let text = |r: std::ops::Range<usize>| std::str::from_utf8(pickle.get(r)?).ok();
                Some((text(module)?.to_owned(), text(name)?.to_owned()))
            }),
            _ => None,
        };
        Rejection { error, global }
    }

    /// Runs `f` with a validator configured from this checker and its workspace; grows the key
    /// table and runs again when the pickle needs more keys checked than the table holds.
    fn run<R>(
        &mut self,
        mut f: impl FnMut(&Validator<'_>, &mut Workspace<'_>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let validator = Validator::new(self.profile)
            .with_allowed(self.allowed.pairs())
            .with_limits(self.limits);
        loop {
            let mut ws = self.workspace.workspace();
            let result = f(&validator, &mut ws);
            self.refused = ws.refused_at();
            let have = self.workspace.keys();
            match result {
                Err(Error::Rejected {
                    at,
                    opcode,
                    reason:
                        Reason::Limit {
                            limit: Limit::KeyTable,
                            found,
                            ..
                        },
                }) => {
                    if have >= self.max_keys {
                        return Err(Error::Rejected {
                            at,
                            opcode,
                            reason: Reason::Limit {
                                limit: Limit::KeyTable,
                                found,
                                max: self.max_keys as u64,
                            },
                        });
                    }
                    self.workspace
                        .set_keys(have.saturating_mul(4).clamp(1024, self.max_keys));
                }
                Err(Error::Rejected {
                    reason: Reason::MemoTooLarge,
                    ..
                }) if self.workspace.memo() < self.max_memo => {
                    let memo = self.workspace.memo().saturating_mul(4).min(self.max_memo);
                    self.workspace.set_memo(memo);
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_cpython_pickles_still_pass_and_hostile_ones_fail() {
        let mut c = Checker::new(Profile::General);
        let mut v =
            |p: &[u8], lens: &[usize]| c.check(p, lens).map(|_| ()).map_err(|e| e.to_string());
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

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

    /// After a [`Reason::GlobalNotAllowed`] rejection of `pickle`: the `module` and `name` it
    /// refused, so that a message can say what to `allow` (if the sender is trusted).
    pub fn refused_global<'p>(&self, pickle: &'p [u8]) -> Option<(&'p str, &'p str)> {
        let (module, name) = self.refused.clone()?;
        let text = |r: std::ops::Range<usize>| std::str::from_utf8(pickle.get(r)?).ok();
        Some((text(module)?, text(name)?))
    }

    /// `e` as one line, naming the refused global and the flag that would allow it.
    pub fn explain(&self, e: &Error, pickle: &[u8]) -> String {
        match (e, self.refused_global(pickle)) {
            (
                Error::Rejected {
                    reason: Reason::GlobalNotAllowed,
                    ..
                },
                Some((module, name)),
            ) => format!("{e}: {module}.{name} (to trust it: --allow {module}:{name})"),
            _ => e.to_string(),
        }
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
    pub fn check(&mut self, pickle: &[u8], buffer_lens: &[usize]) -> Result<Validated, Error> {
        self.run(|v, ws| v.validate(pickle, buffer_lens, ws))
    }

    /// Validates and returns a one-line summary of what the pickle builds.
    pub fn summarize(
        &mut self,
        pickle: &[u8],
        buffer_lens: &[usize],
    ) -> Result<(Validated, String), Error> {
        let mut summary = String::new();
        let validated = self.run(|v, ws| v.summarize(pickle, buffer_lens, ws, &mut summary))?;
        Ok((validated, summary))
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

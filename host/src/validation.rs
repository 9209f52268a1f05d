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

use dmapickle_core::validate::{OwnedWorkspace, Validated, Workspace};
use dmapickle_core::{Error, Profile, Validator};

/// Default abstract stack depth: CPython batches 1000 items per APPENDS/SETITEMS, so a few
/// thousand slots hold any CPython pickle of plain data.
pub const DEFAULT_STACK: usize = 4096;
/// Default memo capacity (CPython memoizes every str and container at protocols 2 and 3).
pub const DEFAULT_MEMO: usize = 1 << 14;

/// A validator with its own workspace; reuse it for every message.
#[derive(Debug)]
pub struct Checker {
    profile: Profile,
    allowed: Vec<(String, String)>,
    max_len: usize,
    workspace: OwnedWorkspace,
}

impl Checker {
    /// A checker with the default stack and memo capacities.
    pub fn new(profile: Profile) -> Self {
        Self::with_capacity(profile, DEFAULT_STACK, DEFAULT_MEMO)
    }

    /// A checker whose abstract stack holds `stack` entries and memo `memo` entries.
    pub fn with_capacity(profile: Profile, stack: usize, memo: usize) -> Self {
        Checker {
            profile,
            allowed: Vec::new(),
            max_len: usize::MAX,
            workspace: OwnedWorkspace::new(stack, memo),
        }
    }

    /// Also allows the global `module.name` (trusted: see `dmapickle_core::validate`).
    pub fn allow(&mut self, module: &str, name: &str) -> &mut Self {
        self.allowed.push((module.to_owned(), name.to_owned()));
        self
    }

    /// Rejects pickles longer than `max_len` bytes.
    pub fn max_len(&mut self, max_len: usize) -> &mut Self {
        self.max_len = max_len;
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

    /// Runs `f` with a validator configured from this checker and its workspace.
    fn run<R>(&mut self, f: impl FnOnce(&Validator<'_>, &mut Workspace<'_>) -> R) -> R {
        let allowed: Vec<(&str, &str)> = self
            .allowed
            .iter()
            .map(|(m, n)| (m.as_str(), n.as_str()))
            .collect();
        let validator = Validator::new(self.profile)
            .with_allowed(&allowed)
            .with_max_len(self.max_len);
        f(&validator, &mut self.workspace.workspace())
    }
}

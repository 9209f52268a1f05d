//! The flags every validating subcommand shares (`check`, `inspect`, `import`, and the live
//! ones through `live::SourceArgs`): `--profile`, `--allow MODULE:NAME` and the `--max-*`
//! limits, as one clap group, [`ValidationArgs`], that builds the [`Checker`].

use clap::ValueEnum;
use dmapickle_core::validate::Limits;
use dmapickle_core::Profile;
use dmapickle_host::validation::Checker;

/// What a pickle must satisfy to be accepted: the grammar, extra globals and the limits.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ValidationArgs {
    /// Grammar pickles are validated against.
    #[arg(long, value_enum, default_value = "general")]
    pub profile: ProfileArg,
    /// Also allow this global (repeatable), e.g. `--allow mypkg.types:Reading`.
    #[arg(long = "allow", value_name = "MODULE:NAME", value_parser = parse_global)]
    pub allow: Vec<(String, String)>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl ValidationArgs {
    /// A checker for these flags.
    pub(crate) fn checker(&self) -> Checker {
        Checker::configured(self.profile.into(), &self.allow, self.limits.limits())
    }
}

/// Validation profile on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ProfileArg {
    /// Exactly what dmapickle's encoder writes.
    Strict,
    /// Also what CPython and numpy write for the same data (protocols 2-5).
    General,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Profile {
        match p {
            ProfileArg::Strict => Profile::Strict,
            ProfileArg::General => Profile::General,
        }
    }
}

/// Parses `MODULE:NAME` for `--allow`.
pub(crate) fn parse_global(s: &str) -> Result<(String, String), String> {
    match s.rsplit_once(':') {
        Some((m, n)) if !m.is_empty() && !n.is_empty() => Ok((m.to_owned(), n.to_owned())),
        _ => Err(format!("expected MODULE:NAME, got {s:?}")),
    }
}

/// The validator's limits as command-line flags (sizes take a K, M or G suffix: KiB, MiB, GiB).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LimitArgs {
    /// Longest pickle accepted, in bytes.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "64M")]
    max_len: u64,
    /// Deepest nesting of containers in any value built.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.max_depth)]
    max_depth: u32,
    /// Largest allocation bound of a load, in bytes.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "256M")]
    max_alloc: u64,
    /// Most keys of one dict or set that may share one CPython hash.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.max_collisions)]
    max_collisions: u32,
    /// Largest logical size (elements x itemsize) of one numpy array, in bytes.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "1G")]
    max_array_bytes: u64,
    /// How many times its length a pickle may expand through shared references (the expanded
    /// size of any value, and of all keys hashed, at most this x length + 65536).
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.max_expansion)]
    max_expansion: u32,
}

impl LimitArgs {
    /// The limits these flags set.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_len: usize::try_from(self.max_len).unwrap_or(usize::MAX),
            max_depth: self.max_depth,
            max_alloc: self.max_alloc,
            max_collisions: self.max_collisions,
            max_array_bytes: self.max_array_bytes,
            max_expansion: self.max_expansion,
        }
    }
}

/// `4096`, `64K`, `64M`, `1G` (powers of 1024; `KiB`/`MiB`/`GiB` and a trailing `B` also).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        Some((i, 'T' | 't')) => (&t[..i], 40),
        _ => (t, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 4096, 64K, 256M, 1G)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

//! `dmapickle export SOURCE OUT.h5|OUT.zarr|DIR --pickle [OPTIONS]`: hands the work to the Python
//! package (`python -m dmapickle export`), where the field's own libraries are: h5py and
//! zarr-python 3 (`pip install './host[export]'`). The interpreter is `$DMAPICKLE_PYTHON`, else
//! `python3` on the PATH; it replaces this process (exec), so signals (Ctrl-C, SIGKILL) and the
//! exit code are the export's own. `dmapickle export --help` lists the options.
//!
//! Exit codes: 0 done or Ctrl-C, 1 a message that cannot be exported, 2 usage or I/O error
//! (also: no Python, or no dmapickle package in it).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// Arguments of `dmapickle export`: passed on unparsed (Python parses them).
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct Args {
    /// SOURCE OUT and the options of `python -m dmapickle export` (see `dmapickle export --help`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<OsString>,
}

/// Runs `dmapickle.__main__.main(["export", ...])`, or says what to install.
const BOOTSTRAP: &str = "\
import sys
try:
    from dmapickle.__main__ import main
except ImportError as e:
    print(f\"dmapickle export: {sys.executable} has no dmapickle package ({e}); install it with \
the export extra (pip install './host[export]') or set DMAPICKLE_PYTHON to a Python that has it\",
          file=sys.stderr)
    sys.exit(2)
sys.exit(main(['export'] + sys.argv[1:]))
";

pub(crate) fn run(args: Args) -> ExitCode {
    let python = std::env::var_os("DMAPICKLE_PYTHON").unwrap_or_else(|| "python3".into());
    // `exec` only returns on failure.
    let err = Command::new(&python)
        .arg("-c")
        .arg(BOOTSTRAP)
        .args(&args.args)
        .exec();
    eprintln!(
        "dmapickle export: cannot run {} ({err}); export runs in Python 3 with the dmapickle \
         package (pip install './host[export]'): put python3 on the PATH or set DMAPICKLE_PYTHON",
        python.to_string_lossy()
    );
    ExitCode::from(2)
}

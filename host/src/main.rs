//! `dmapickle`: the host command line. Subcommands live in `cli/`, one file each.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

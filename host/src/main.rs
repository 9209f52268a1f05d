//! `dmapickle`: the host command line. Subcommands live in `cli/`, one file each.

mod cli;
mod progress;

fn main() -> std::process::ExitCode {
    std_fds_open();
    quiet_on_broken_pipe();
    cli::main()
}

/// Makes sure stdin, stdout and stderr are open (on `/dev/null` if the caller closed one, as in
/// `2>&-`): otherwise the next file or socket opened would get that number, and messages meant
/// for stderr would land in a recording or on the device's link.
fn std_fds_open() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor; no memory is passed.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // SAFETY: a NUL-terminated path; open returns the lowest free descriptor, which is
            // `fd` (the lower ones are open), or -1, in which case there is nothing better to do.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

/// When stdout or stderr is a pipe whose reader has gone (`dmapickle listen ... | head -1`),
/// `println!`/`eprintln!` panic; end the way `cat` does instead, killed by SIGPIPE without a
/// message (the shell shows status 141).
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            // SAFETY: restoring the default action of SIGPIPE and raising it take no pointers.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
            std::process::exit(141);
        }
        default(info);
    }));
}

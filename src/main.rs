use clap::Parser;

fn main() -> std::process::ExitCode {
    // A file-size limit (ulimit -f) must come back as a failed write, which ualign reports
    // and survives, not as SIGXFSZ, which would kill it with the terminal in raw mode.
    // SAFETY: setting a signal's disposition to "ignore" has no handler to race with.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = ualign::cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

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
            eprintln!("error: {}", one_message(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes as one message, each cause said once: a cause whose text the
/// message already holds (many errors quote their source) is not repeated.
fn one_message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    let damaged = e.chain().any(ualign_core::store::caused_by_damage);
    if damaged {
        msg.push_str(
            "\n  the study's database file is damaged: stop the study, run `ualign check STUDY`, and restore the file from a backup",
        );
    }
    msg
}

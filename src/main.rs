use clap::Parser;

fn main() {
    // Output into a closed pipe (`ouro ... | head`) ends the process quietly, as for other
    // command-line tools, instead of a panic in println!.
    #[cfg(unix)]
    // SAFETY: restoring the default action of SIGPIPE, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Ctrl-C or SIGTERM: delete the half-written run folder, then exit as interrupted.
    // The lock makes the two ways out exclusive: a run that fails because the handler deleted
    // its folder waits here for the handler's exit instead of reporting that failure.
    static EXIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _ = ctrlc::set_handler(|| {
        let _exit = EXIT.lock();
        if ouro::experiment::run_dir::remove_partial_folders() > 0 {
            eprintln!("error: interrupted; the unfinished run folder was removed");
        } else if ouro::experiment::run_dir::keeps_partial_folders() {
            eprintln!("error: interrupted; the unfinished run folder is kept for --resume");
        } else {
            eprintln!("error: interrupted");
        }
        std::process::exit(130);
    });
    let cli = ouro::cli::Cli::parse();
    if let Err(e) = ouro::nn::isa::check_env() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    if let Err(e) = ouro::cli::main_with(cli) {
        let _exit = EXIT.lock();
        eprintln!("error: {e}");
        let code = match e {
            ouro::error::Error::Stopped => ouro::experiment::slurm::STOPPED_EXIT,
            _ => 2,
        };
        std::process::exit(code);
    }
}

use clap::Parser;

fn main() {
    let cli = ouro::cli::Cli::parse();
    if let Err(e) = ouro::cli::main_with(cli) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

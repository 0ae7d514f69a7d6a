//! The `portcullis` binary: parse the command line and hand over to `cli`.
//! Errors print as one chain (`{:#}`) and exit 1; usage errors exit 2.

use clap::Parser;

fn main() {
    let cli = portcullis::cli::Cli::parse();
    if let Err(e) = portcullis::cli::run(cli) {
        eprintln!("portcullis: {e:#}");
        std::process::exit(1);
    }
}

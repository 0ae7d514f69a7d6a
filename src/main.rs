//! The `portcullis` binary: parse the command line and hand over to `cli`.
//! Errors print as one chain (`{:#}`) and exit 1; usage errors exit 2.

use clap::Parser;

/// mimalloc: per-thread free lists for every size a request allocates,
/// including hyper's 8 KiB read buffers, which glibc's allocator serves from
/// its slower shared bins.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = portcullis::cli::Cli::parse();
    if let Err(e) = portcullis::cli::run(cli) {
        eprintln!("portcullis: {e:#}");
        std::process::exit(1);
    }
}

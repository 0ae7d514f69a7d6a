//! The `portcullis` binary: parse the command line and hand over to `cli`.
//! Errors print as one chain (`{:#}`) and exit 1; usage errors exit 2.

use clap::Parser;

/// mimalloc: per-thread free lists for every size a request allocates,
/// including hyper's 8 KiB read buffers, which glibc's allocator serves from
/// its slower shared bins.
#[global_allocator]
static ALLOC: Alloc = Alloc;

/// mimalloc through its plain entry points whenever the alignment asked for
/// is one `mi_malloc` guarantees anyway (as Rust's own system allocator does
/// with `malloc`). Its aligned entry point sends blocks above 4 KiB — hyper's
/// read buffer, once per request — down an over-allocating slow path even
/// for an alignment of 1.
struct Alloc;

/// The alignment every `mi_malloc` block of at least this size has.
const MI_MAX_ALIGN: usize = 16;

fn plain(layout: std::alloc::Layout) -> bool {
    layout.align() <= MI_MAX_ALIGN && layout.align() <= layout.size()
}

// SAFETY: every block comes from mimalloc and goes back to it; blocks from
// `mi_malloc` have the alignment `plain` requires, the others come from the
// aligned entry points with the layout's alignment.
unsafe impl std::alloc::GlobalAlloc for Alloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if plain(layout) {
            libmimalloc_sys::mi_malloc(layout.size()).cast()
        } else {
            mimalloc::MiMalloc.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if plain(layout) {
            libmimalloc_sys::mi_zalloc(layout.size()).cast()
        } else {
            mimalloc::MiMalloc.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        libmimalloc_sys::mi_free(ptr.cast());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MI_MAX_ALIGN && layout.align() <= new_size {
            libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mimalloc::MiMalloc.realloc(ptr, layout, new_size)
        }
    }
}

fn main() {
    let cli = portcullis::cli::Cli::parse();
    if let Err(e) = portcullis::cli::run(cli) {
        eprintln!("portcullis: {e:#}");
        std::process::exit(1);
    }
}

//! The `portcullis` binary: parse the command line and hand over to `cli`.
//! Errors print as one line naming each cause once ([`portcullis::tools::cli::error_line`])
//! and exit 1; usage errors exit 2.

use std::alloc::{GlobalAlloc, Layout};

/// mimalloc: per-thread free lists for every size a request allocates,
/// including hyper's 8 KiB read buffers, which glibc's allocator serves from
/// its slower shared bins.
#[global_allocator]
static ALLOC: Alloc = Alloc;

/// mimalloc through its plain entry points (`mi_malloc`, `mi_zalloc`,
/// `mi_realloc`) whenever the alignment asked for is one those guarantee
/// anyway, as Rust's own system allocator does with `malloc`. The `mimalloc`
/// crate always calls the aligned entry points, which send blocks above
/// 4 KiB (hyper's read buffer, once per request) down an over-allocating
/// slow path even for an alignment of 1. It lives here, not in the library,
/// which forbids unsafe code.
struct Alloc;

/// The alignment every `mi_malloc` block of at least this size has.
const MI_MAX_ALIGN: usize = 16;

/// Whether a block of `size` bytes with this alignment may come from the
/// plain entry points.
fn plain(align: usize, size: usize) -> bool {
    align <= MI_MAX_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc and goes back to it (`mi_free`
// takes blocks from either entry point); blocks from the plain entry points
// have the alignment `plain` requires, the others come from the aligned entry
// points with the layout's alignment.
unsafe impl GlobalAlloc for Alloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            libmimalloc_sys::mi_malloc(layout.size()).cast()
        } else {
            mimalloc::MiMalloc.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            libmimalloc_sys::mi_zalloc(layout.size()).cast()
        } else {
            mimalloc::MiMalloc.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        libmimalloc_sys::mi_free(ptr.cast());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(layout.align(), new_size) {
            libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mimalloc::MiMalloc.realloc(ptr, layout, new_size)
        }
    }
}

fn main() {
    let cli = portcullis::tools::cli::parse();
    if let Err(e) = portcullis::tools::cli::run(cli) {
        eprintln!("portcullis: {}", portcullis::tools::cli::error_line(&e));
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_asked_for_and_survive_growth() {
        for (size, align) in [
            (1, 1),
            (8, 8),
            (24, 8),
            (100, 16),
            (9000, 1),
            (64, 64),
            (8, 4096),
        ] {
            let layout = Layout::from_size_align(size, align).expect("layout");
            // SAFETY: non-zero sizes; every block is freed with its layout.
            unsafe {
                let p = Alloc.alloc(layout);
                assert!(!p.is_null() && p as usize % align == 0, "{size}/{align}");
                p.write_bytes(0xa5, size);
                let q = Alloc.realloc(p, layout, size * 3);
                assert!(
                    !q.is_null() && q as usize % align == 0,
                    "grown {size}/{align}"
                );
                assert_eq!(*q, 0xa5, "contents kept");
                Alloc.dealloc(q, Layout::from_size_align(size * 3, align).expect("layout"));
                let z = Alloc.alloc_zeroed(layout);
                assert!(std::slice::from_raw_parts(z, size).iter().all(|b| *b == 0));
                Alloc.dealloc(z, layout);
            }
        }
    }
}

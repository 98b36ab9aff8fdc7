//! The process's allocator: mimalloc, asked for plain blocks whenever the alignment
//! asked for is one every block has.
//!
//! Rust passes every allocation's alignment; mimalloc's own `GlobalAlloc` hands each
//! to `mi_malloc_aligned`, whose fast path serves only sizes up to 1 KiB that happen to
//! be free at the right alignment. Larger ones (a connection's 4 KiB read buffer, a
//! request's boxed futures of 2–3 KiB) took its over-allocating aligned path: about a
//! thousand instructions per proxied request, for alignments of 1 and 8, which every
//! mimalloc block has (block sizes are multiples of the word, pages start aligned).
//! Those go to `mi_malloc` here; larger alignments still go to the aligned calls.

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment every mimalloc block has: a word.
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc, plain for word-aligned layouts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocator;

// SAFETY: every call forwards to mimalloc, which returns null or a block of at least
// `size` bytes at the layout's alignment: `mi_malloc` and friends only when that
// alignment is at most a word, which all of mimalloc's blocks have; the aligned calls
// otherwise. Blocks from either family are freed and resized by the same calls.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's calls have no preconditions beyond a power-of-two alignment.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract).
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the caller's contract).
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Allocator;
    use std::alloc::{GlobalAlloc, Layout};

    /// Allocates, writes, grows and frees every size class a request uses, at every
    /// alignment: each block is where the layout says, and keeps its bytes on `realloc`.
    #[test]
    fn blocks_have_their_alignment_and_keep_their_bytes() {
        let sizes = [
            1,
            7,
            8,
            13,
            24,
            100,
            1000,
            1025,
            3440,
            4096,
            70_000,
            5 << 20,
        ];
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in sizes {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; each block is freed once, with its layout.
                unsafe {
                    let p = Allocator.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xa5, size);
                    let grown = Allocator.realloc(p, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "grown {size} align {align}");
                    let kept = std::slice::from_raw_parts(grown, size);
                    assert!(kept.iter().all(|&b| b == 0xa5));
                    Allocator.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());

                    let z = Allocator.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    Allocator.dealloc(z, layout);
                }
            }
        }
    }
}

//! Memory for the local store's tables, mapped straight from the kernel.
//!
//! Each shard's table is allocated once, at its full capacity (see `local::shards`): it never grows, so no
//! generation of a doubling table is allocated and freed on the way up (the allocator kept those pages: ~170 bytes of
//! RSS per record where the final tables hold ~75). Reserved is not resident: anonymous pages are backed on first
//! write, so a table costs what its records touch, and a key kind no defense uses costs its control bytes only.
//! Through the general allocator the same reservation was committed at once (mimalloc's arenas).

use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Layout};

/// Allocates whole anonymous mappings; frees them with `munmap`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsPages;

/// Mappings are page-aligned; the tables ask for 16-byte alignment.
const PAGE: usize = 4096;

unsafe impl Allocator for OsPages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() > PAGE {
            return Err(AllocError);
        }
        if layout.size() == 0 {
            // A dangling, suitably aligned pointer, as the allocator contract allows for zero-sized blocks.
            let dangling = NonNull::new(layout.align() as *mut u8).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(dangling, 0));
        }
        // SAFETY: an anonymous private mapping of `size` bytes, no file, no fixed address. `MAP_NORESERVE`: a table is
        // sized for its cap but touched only where records land, so no swap is set aside for the whole of it (under
        // the kernel's default overcommit heuristic).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(AllocError);
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: `ptr` and `layout.size()` are those of a mapping `allocate` made and nothing else unmapped.
            unsafe {
                libc::munmap(ptr.as_ptr().cast(), layout.size());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_is_aligned_zeroed_and_writable_and_zero_sized_blocks_need_no_mapping() {
        let layout = Layout::from_size_align(3 * PAGE + 5, 16).unwrap();
        let block = OsPages.allocate(layout).unwrap();
        let ptr = block.cast::<u8>().as_ptr();
        assert_eq!(ptr as usize % PAGE, 0);
        // SAFETY: the block is `layout.size()` bytes, mapped read-write above.
        unsafe {
            assert!(std::slice::from_raw_parts(ptr, layout.size()).iter().all(|&b| b == 0));
            ptr.add(layout.size() - 1).write(7);
            OsPages.deallocate(block.cast(), layout);
        }
        let empty = Layout::from_size_align(0, 8).unwrap();
        let block = OsPages.allocate(empty).unwrap();
        assert_eq!(block.len(), 0);
        // SAFETY: a zero-sized block from `allocate`.
        unsafe { OsPages.deallocate(block.cast(), empty) };
        assert!(OsPages.allocate(Layout::from_size_align(64, 2 * PAGE).unwrap()).is_err());
    }
}

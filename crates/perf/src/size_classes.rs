//! The allocator `hive-perf` measures with: power-of-two size classes with free lists, carved
//! from 1 MiB slabs. It exists so an instruction count does not depend on the machine.
//!
//! glibc's malloc does not cost the same on every machine: its heap tunables alone move the
//! scheduler workload's count by up to 2% here, and the same binary counted +10% on CI's machine
//! for that workload (a quarter of whose instructions were glibc's) while the codec workload
//! agreed to 0.01%. With this allocator every allocation
//! costs the same few instructions everywhere, inside the measured binary, so the count still
//! sees a change that allocates more, but not the host's heap layout. The hub itself keeps the
//! system allocator; this one never leaves `hive-perf`. It is the workspace's one `unsafe`
//! module (an allocator cannot be written without it); each block says why it is sound.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Classes of 16 B, 32 B, ... 64 KiB; anything larger goes to the system allocator.
const SMALLEST_SHIFT: u32 = 4;
const CLASSES: usize = 13;
const LARGEST: usize = 1 << (SMALLEST_SHIFT as usize + CLASSES - 1);
const SLAB: usize = 1 << 20;

pub struct SizeClasses {
    locked: AtomicBool,
    state: UnsafeCell<State>,
}

struct State {
    /// Each class's freed blocks, linked through their first word.
    free: [*mut u8; CLASSES],
    /// The unused end of the current slab.
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: `state` is only touched with `locked` held.
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub const fn new() -> Self {
        SizeClasses {
            locked: AtomicBool::new(false),
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                next: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }

    /// The class index and block size for a layout, or `None` for the system allocator.
    fn class(layout: Layout) -> Option<(usize, usize)> {
        let size = layout
            .size()
            .max(layout.align())
            .max(1 << SMALLEST_SHIFT)
            .next_power_of_two();
        (size <= LARGEST).then(|| ((size.trailing_zeros() - SMALLEST_SHIFT) as usize, size))
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held, so this is the only reference.
        let result = f(unsafe { &mut *self.state.get() });
        self.locked.store(false, Ordering::Release);
        result
    }
}

impl Default for SizeClasses {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out is `size >= layout.size()` bytes aligned to `size >=
// layout.align()` (blocks are carved at multiples of their own power-of-two size from slabs
// aligned to the largest class) and is never handed out again until it is freed.
unsafe impl GlobalAlloc for SizeClasses {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((class, size)) = Self::class(layout) else {
            // SAFETY: the caller's layout, passed on.
            return unsafe { System.alloc(layout) };
        };
        self.with_state(|state| {
            let head = state.free[class];
            if !head.is_null() {
                // SAFETY: a freed block of this class holds the next one's address.
                state.free[class] = unsafe { head.cast::<*mut u8>().read() };
                return head;
            }
            let mut start = state.next.map_addr(|a| a.next_multiple_of(size));
            if state.next.is_null() || start.addr() + size > state.end.addr() {
                // SAFETY: a non-zero size and a power-of-two alignment.
                let slab =
                    unsafe { System.alloc(Layout::from_size_align_unchecked(SLAB, LARGEST)) };
                if slab.is_null() {
                    return slab;
                }
                // SAFETY: the slab is SLAB bytes long.
                state.end = unsafe { slab.add(SLAB) };
                start = slab;
            }
            // SAFETY: `start + size <= end`, inside the slab.
            state.next = unsafe { start.add(size) };
            start
        })
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some((class, _)) = Self::class(layout) else {
            // SAFETY: a large block came from the system allocator with this layout.
            return unsafe { System.dealloc(block, layout) };
        };
        self.with_state(|state| {
            // SAFETY: the block is at least 16 bytes and ours again.
            unsafe { block.cast::<*mut u8>().write(state.free[class]) };
            state.free[class] = block;
        });
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees a valid layout for the new size.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (Self::class(layout), Self::class(new_layout)) {
            (Some((old, _)), Some((new, _))) if old == new => block,
            // SAFETY: both layouts are the system allocator's.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: a new block for the new layout, the old one's bytes copied, then freed.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_reused_by_class_and_keep_their_bytes_when_grown() {
        let heap = SizeClasses::new();
        let small = Layout::from_size_align(24, 8).unwrap();
        let aligned = Layout::from_size_align(100, 64).unwrap();
        unsafe {
            let a = heap.alloc(small);
            let b = heap.alloc(aligned);
            assert_eq!(b.addr() % 64, 0);
            assert_ne!(a, b);
            a.write_bytes(7, 24);
            let grown = heap.realloc(a, small, 5000);
            assert_eq!(std::slice::from_raw_parts(grown, 24), &[7; 24]);
            let again = heap.alloc(small);
            assert_eq!(
                again, a,
                "the freed 32-byte block is the next one of its class"
            );
            let large = Layout::from_size_align(1 << 20, 8).unwrap();
            let big = heap.alloc(large);
            assert!(!big.is_null());
            heap.dealloc(big, large);
            heap.dealloc(again, small);
            heap.dealloc(b, aligned);
            heap.dealloc(grown, Layout::from_size_align(5000, 8).unwrap());
        }
    }
}

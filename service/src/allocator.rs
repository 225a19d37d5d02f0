//! The process's allocator: mimalloc, told to give memory back to the system once it has been
//! unused for a while. What a load decodes and drops (fetched files, pages, intermediate buffers)
//! would otherwise stay in the process beside the loaded data (about a third more resident memory
//! than the data itself, measured on TPC-H), while memory one query frees and the next takes is
//! not returned and taken again each time (returning it at once slowed queries by 20-40 %; after
//! 500 ms, by 10-15 % on TPC-H queries run back to back). So memory goes back 5 s after it is
//! freed, or at once after a table version is published.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option numbers (`mi_option_e` in mimalloc.h, version 2).
const ARENA_EAGER_COMMIT: i32 = 4;
const PURGE_DECOMMITS: i32 = 5;
const PURGE_DELAY: i32 = 15;
/// Unused memory goes back after this long (milliseconds), or at once after a publish (see
/// [`return_unused_soon`]).
const RETURN_AFTER_MS: i32 = 5000;

/// Set when freed memory should go back at the next tick instead of after [`RETURN_AFTER_MS`].
static RETURN_NOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks for the memory freed so far to go back to the system within a quarter second. Called when
/// a table version is published: what its load or placement decoded and dropped, and the version
/// it replaces once no query holds it, is not needed again soon. Memory a query frees is kept for
/// [`RETURN_AFTER_MS`], for the next queries to take.
pub fn return_unused_soon() {
    RETURN_NOW.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Sets the options; call first thing in `main`, before other threads start.
pub fn configure() {
    for (option, value) in [
        (ARENA_EAGER_COMMIT, 0),
        (PURGE_DECOMMITS, 1),
        (PURGE_DELAY, RETURN_AFTER_MS),
    ] {
        // SAFETY: mi_option_set only stores an integer in mimalloc's option table, with option
        // numbers mimalloc defines.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(option, value.into());
        }
    }
    // Delayed returns happen when the allocator is called; an idle process would keep them.
    let _ = std::thread::Builder::new()
        .name("memory-return".into())
        .spawn(|| {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(250));
                let now = RETURN_NOW.swap(false, std::sync::atomic::Ordering::Relaxed);
                // SAFETY: mi_collect may be called from any thread at any time.
                #[allow(unsafe_code)]
                unsafe {
                    libmimalloc_sys::mi_collect(now);
                }
            }
        });
}

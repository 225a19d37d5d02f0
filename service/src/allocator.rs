//! The process's allocator: mimalloc, told to give memory back to the system once it has been
//! unused for a while. What a load decodes and drops (fetched files, pages, intermediate buffers)
//! would otherwise stay in the process beside the loaded data (about a third more resident memory
//! than the data itself, measured on TPC-H), while memory one query frees and the next takes is
//! not returned and taken again each time (returning it at once slowed queries by 20-40 %).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option numbers (`mi_option_e` in mimalloc.h, version 2).
const ARENA_EAGER_COMMIT: i32 = 4;
const PURGE_DECOMMITS: i32 = 5;
const PURGE_DELAY: i32 = 15;
/// Unused memory goes back after this long (milliseconds).
const RETURN_AFTER_MS: i32 = 500;

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
                // SAFETY: mi_collect may be called from any thread at any time.
                #[allow(unsafe_code)]
                unsafe {
                    libmimalloc_sys::mi_collect(false);
                }
            }
        });
}

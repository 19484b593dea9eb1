//! The engine's thread pool for decoding images.

use std::sync::{Arc, Mutex};

/// The process's pool, whose threads block all signals: in a PostgreSQL backend the handlers
/// must run on the backend's own thread. One pool at a time: a call with another size replaces
/// it, and the old one's threads end once the work in hand is done (a pool per size ever asked
/// for left 2,144 threads in a backend that tried 1…64).
pub fn pool(threads: usize) -> Arc<rayon::ThreadPool> {
    static POOL: Mutex<Option<Arc<rayon::ThreadPool>>> = Mutex::new(None);
    let threads = threads.max(1);
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pool.as_ref().filter(|p| p.current_num_threads() == threads) {
        return p.clone();
    }
    let p = Arc::new(
        vs_embed::tasks::pool_builder(threads)
            .start_handler(|_| unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
            })
            .build()
            .expect("rayon pool"),
    );
    *pool = Some(p.clone());
    p
}

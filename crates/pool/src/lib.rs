//! The thread pool of a process that runs inside a PostgreSQL backend. The main library (index
//! builds) and the engine library (decoding images) each link this and so each keep their own.

use std::sync::{Arc, Mutex};

/// Pool threads named for `top` and the like; a task that panics is reported as missing by its
/// caller, where rayon's default handler would abort the process (the whole backend).
pub fn builder(threads: usize) -> rayon::ThreadPoolBuilder {
    rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).thread_name(|i| format!("visual_search-{i}")).panic_handler(|_| {})
}

/// The process's pool, whose threads block all signals: PostgreSQL's handlers must run on the
/// backend's own thread. One pool at a time: a call with another size replaces it, and the old
/// one's threads end once the work in hand is done (a pool per size ever asked for left 2,144
/// threads in a backend that tried 1…64).
pub fn pool(threads: usize) -> Arc<rayon::ThreadPool> {
    static POOL: Mutex<Option<Arc<rayon::ThreadPool>>> = Mutex::new(None);
    let threads = threads.max(1);
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pool.as_ref().filter(|p| p.current_num_threads() == threads) {
        return p.clone();
    }
    let p = Arc::new(
        builder(threads)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pool_at_a_time_its_threads_deaf_to_signals() {
        let a = pool(2);
        assert!(Arc::ptr_eq(&a, &pool(2)), "the same size, the same pool");
        let b = pool(3);
        assert_eq!(b.current_num_threads(), 3);
        let blocked = b.install(|| unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
            libc::sigismember(&set, libc::SIGINT) == 1 && libc::sigismember(&set, libc::SIGTERM) == 1
        });
        assert!(blocked, "pool threads block SIGINT and SIGTERM");
        assert!(b.install(|| std::panic::catch_unwind(|| panic!("a task's panic")).is_err()));
    }
}

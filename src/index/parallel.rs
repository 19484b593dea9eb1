//! Parallel CREATE INDEX on PostgreSQL's parallel workers (max_parallel_maintenance_workers): the
//! leader scans the heap and owns the graph; a copy of it lives in the parallel context's
//! dynamic shared memory (`mirror::Mirror`), where the workers and the leader run each batch's
//! steps side by side, claiming items one at a time. They sleep on a condition variable between
//! steps; an error in a worker reaches the leader through the parallel context, and aborting the
//! transaction ends the workers and frees the segment.

use pgrx::pg_sys;
use pgrx::prelude::*;
use vs_hnsw::beam::Visited;
use vs_hnsw::graph::{Batch, Graph, Team, Threads};
use vs_hnsw::mirror::{self, Layout, Mirror, DONE};

const KEY_CV: u64 = 0x7653_0001;
const KEY_MIRROR: u64 = 0x7653_0002;

pub struct Workers {
    pcxt: *mut pg_sys::ParallelContext,
    cv: *mut pg_sys::ConditionVariable,
    mirror: Mirror,
    /// False once the mirror no longer holds the graph: the leader's threads do the rest.
    mirrored: bool,
    threads: usize,
}

fn buffer_align(n: usize) -> usize {
    (n + pg_sys::ALIGNOF_BUFFER as usize - 1) & !(pg_sys::ALIGNOF_BUFFER as usize - 1)
}

/// Bytes free where PostgreSQL keeps dynamic shared memory (POSIX: /dev/shm), when it can tell.
/// A segment that does not fit there fails the whole CREATE INDEX with an ERROR ("could not
/// resize shared memory segment"), and Docker gives /dev/shm 64 MB by default.
fn shm_free() -> Option<u64> {
    if unsafe { pg_sys::dynamic_shared_memory_type } != pg_sys::DSM_IMPL_POSIX as i32 {
        return None;
    }
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c"/dev/shm".as_ptr(), &mut st) } == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

impl Workers {
    /// Starts up to `nworkers` workers over a mirror of `g` with room for `cap_nodes` nodes.
    /// None when no worker could be started.
    pub unsafe fn start(g: &Graph, nworkers: usize, cap_nodes: usize, batch: usize) -> Option<Workers> {
        unsafe {
            let layout = Layout::new(g.dim, g.is_f16(), g.params.m, cap_nodes.max(g.len()), batch);
            if let Some(free) = shm_free().filter(|&free| layout.total as u64 + (16 << 20) > free) {
                pgrx::notice!(
                    "vs_hnsw: the parallel workers would need {} MB of shared memory and /dev/shm has {} MB free; building on the leader's threads",
                    layout.total >> 20,
                    free >> 20
                );
                return None;
            }
            pg_sys::EnterParallelMode();
            let pcxt = pg_sys::CreateParallelContext(c"visual_search".as_ptr(), c"vs_hnsw_build_worker".as_ptr(), nworkers as i32);
            let e = &mut (*pcxt).estimator;
            e.space_for_chunks += buffer_align(std::mem::size_of::<pg_sys::ConditionVariable>()) + buffer_align(layout.total + 64);
            e.number_of_keys += 2;
            pg_sys::InitializeParallelDSM(pcxt);
            if (*pcxt).seg.is_null() {
                // No dynamic shared memory to be had: no workers either.
                pg_sys::DestroyParallelContext(pcxt);
                pg_sys::ExitParallelMode();
                return None;
            }
            let cv = pg_sys::shm_toc_allocate((*pcxt).toc, std::mem::size_of::<pg_sys::ConditionVariable>()) as *mut pg_sys::ConditionVariable;
            pg_sys::ConditionVariableInit(cv);
            pg_sys::shm_toc_insert((*pcxt).toc, KEY_CV, cv as *mut _);
            let raw = pg_sys::shm_toc_allocate((*pcxt).toc, layout.total + 64) as usize;
            let base = ((raw + 63) & !63) as *mut u8;
            pg_sys::shm_toc_insert((*pcxt).toc, KEY_MIRROR, base as *mut _);
            let mirror = Mirror::init(base, layout, g.metric, g.params.m);
            pg_sys::LaunchParallelWorkers(pcxt);
            let launched = (*pcxt).nworkers_launched.max(0) as usize;
            let w = Workers { pcxt, cv, mirror, mirrored: true, threads: 1 + nworkers };
            if launched == 0 {
                w.finish();
                return None;
            }
            pgrx::debug1!("vs_hnsw: {launched} parallel workers build the graph beside the leader");
            Some(w)
        }
    }

    /// Tells the workers to stop, waits for them and frees the context.
    pub unsafe fn finish(self) {
        unsafe {
            self.mirror.publish(DONE, 0);
            pg_sys::ConditionVariableBroadcast(self.cv);
            pg_sys::WaitForParallelWorkersToFinish(self.pcxt);
            pg_sys::DestroyParallelContext(self.pcxt);
            pg_sys::ExitParallelMode();
        }
    }

    fn steps(&self) -> (impl FnMut(u64) + '_, impl FnMut() + '_) {
        let cv = self.cv;
        let work = move |generation: u64| unsafe {
            pg_sys::ConditionVariableBroadcast(cv);
            self.mirror.work(generation, &mut Visited::default(), || pg_sys::ConditionVariableBroadcast(cv));
        };
        let wait = move || unsafe {
            while !self.mirror.finished() {
                pg_sys::ConditionVariableSleep(cv, pg_sys::PG_WAIT_EXTENSION);
            }
            pg_sys::ConditionVariableCancelSleep();
        };
        (work, wait)
    }

    /// The leader's threads, for good: the mirror missed (or could not take) a step.
    fn threads(&mut self) -> std::sync::Arc<rayon::ThreadPool> {
        if self.mirrored {
            self.mirrored = false;
            pgrx::debug1!("vs_hnsw: the graph outgrew the parallel workers' shared memory; the leader's threads go on");
        }
        crate::glue::pool(self.threads)
    }
}

impl Team for Workers {
    fn plan(&mut self, g: &Graph, b: &Batch) -> Vec<Vec<Vec<u32>>> {
        if self.mirrored {
            let (mut work, mut wait) = self.steps();
            if let Some(lists) = mirror::plan_on(&self.mirror, g, b, &mut work, &mut wait) {
                return lists;
            }
        }
        Threads(&self.threads()).plan(g, b)
    }

    fn merge(&mut self, g: &Graph, work: &[(u32, usize, Vec<u32>)]) -> Vec<Vec<u32>> {
        if self.mirrored {
            let (mut w, mut wait) = self.steps();
            if let Some(lists) = mirror::merge_on(&self.mirror, work, &mut w, &mut wait) {
                return lists;
            }
        }
        Threads(&self.threads()).merge(g, work)
    }
}

/// A parallel worker's part of the build: wait for a step, work on it, until told to stop.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn vs_hnsw_build_worker(_seg: *mut pg_sys::dsm_segment, toc: *mut pg_sys::shm_toc) {
    unsafe {
        let cv = pg_sys::shm_toc_lookup(toc, KEY_CV, false) as *mut pg_sys::ConditionVariable;
        let mirror = Mirror::attach(pg_sys::shm_toc_lookup(toc, KEY_MIRROR, false) as *mut u8);
        let mut visited = Visited::default();
        let mut seen = 0;
        loop {
            let (generation, step) = mirror.current();
            if generation == seen {
                pg_sys::ConditionVariableSleep(cv, pg_sys::PG_WAIT_EXTENSION);
                continue;
            }
            pg_sys::ConditionVariableCancelSleep();
            if step == DONE {
                return;
            }
            mirror.work(generation, &mut visited, || pg_sys::ConditionVariableBroadcast(cv));
            seen = generation;
        }
    }
}

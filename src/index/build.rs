//! CREATE INDEX: the heap's vectors go into an in-memory `graph::Graph` while it fits in
//! maintenance_work_mem; the graph is then written out page by page (one full-page WAL record
//! per page), and whatever rows remain are inserted on disk as ordinary inserts do. With
//! parallel workers planned, batches of rows go in on PostgreSQL's workers (`parallel`).

use super::codec::{check_dim, encode, heap_tid_bytes, prepare};
use super::opclass::{Kind, Opclass};
use super::page::{self, add_item, corrupt, init_meta, item_room, page_capacity, too_big, Meta, QuantMeta, META_BLOCK, NO_ENTRY};
use super::parallel::Workers;
use super::parallel_insert;
use super::quant;
use crate::glue::error::error;
use crate::types::datum::SqlScalar;
use half::f16;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use vs_hnsw::graph::{Graph, Params, Threads};
use vs_hnsw::metric::Metric;
use vs_hnsw::tuple::{self, Id};

/// pg_stat_progress_create_index's subphases (named by `am::ambuildphasename`).
pub const PHASE_LOAD: i64 = 2;
pub const PHASE_WRITE: i64 = 3;

struct State<T> {
    index: pg_sys::Relation,
    meta: Meta,
    /// None until the first vector (whose length sets the dimension) and after the flush.
    graph: Option<Graph>,
    params: Params,
    in_memory: bool,
    /// Vectors waiting to go into the graph as one parallel batch, and the processes for it
    /// (the leader and max_parallel_maintenance_workers, as PostgreSQL plans them).
    pending: Vec<f32>,
    threads: usize,
    /// The parallel workers, once the graph is big enough to share the work (see `parallel`).
    workers: Option<Workers>,
    workers_tried: bool,
    /// Rows the heap is expected to hold (pg_class.reltuples), to size the workers' memory.
    expected: usize,
    heap_tids: Vec<[u8; 6]>,
    limit: usize,
    tuples: f64,
    row: RowContext,
    _t: std::marker::PhantomData<T>,
}

/// A memory context for what one row of the heap scan allocates, emptied at the next: the scan
/// calls back in the build's own context, where a detoasted vector (any over 2 kB) stayed to
/// the end of the build: 3 KB a row at 784 dimensions, 100 KB at 25,088.
pub struct RowContext(pgrx::PgMemoryContexts);

impl Default for RowContext {
    fn default() -> RowContext {
        RowContext(pgrx::PgMemoryContexts::new("vs_hnsw build row"))
    }
}

impl RowContext {
    /// Runs `f` in the context, once the previous row's allocations are gone.
    pub fn next<R>(&mut self, f: impl FnOnce() -> R) -> R {
        unsafe { pg_sys::MemoryContextReset(self.0.value()) };
        unsafe { self.0.switch_to(|_| f()) }
    }
}

/// Bytes an in-memory node takes: its vector, its edges, and the vectors' bookkeeping.
fn node_bytes(dim: usize, m: usize) -> usize {
    dim * 4 + 2 * m * 4 + 96
}

// Called from the heap scan's C code: an ERROR raised in here (a vector of another dimension, a
// cancel while waiting for the workers) must leave as PostgreSQL's longjmp, not a Rust unwind.
#[pg_guard]
unsafe extern "C-unwind" fn callback<T: SqlScalar>(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    unsafe {
        let st = &mut *(state as *mut State<T>);
        let meta = st.meta;
        let Some(v) = st.row.next(|| prepare::<T>(*values, *isnull, &meta)) else { return };
        if st.meta.dim == 0 {
            st.meta.dim = v.len() as u32;
        }
        let tid = heap_tid_bytes(tid);
        st.tuples += 1.0;
        if st.in_memory && st.graph.is_none() {
            st.graph = Some(Graph::new(v.len(), st.meta.opclass.graph_metric(), st.params));
        }
        if st.graph.as_ref().is_some_and(|g| (g.len() + st.pending.len() / v.len()) * node_bytes(v.len(), st.meta.m as usize) >= st.limit) {
            pgrx::notice!("vs_hnsw graph no longer fits in maintenance_work_mem after {} tuples; going on with slower on-disk inserts", st.heap_tids.len());
            flush::<T>(st);
        }
        match st.graph.as_mut() {
            Some(g) if st.threads == 1 => {
                let f: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
                g.insert(&f);
                st.heap_tids.push(tid);
            }
            Some(_) => {
                st.pending.extend(v.iter().map(|x| x.to_f32()));
                st.heap_tids.push(tid);
                if st.pending.len() >= BATCH * v.len() {
                    insert_pending(st);
                }
            }
            None => st.row.next(|| super::insert::insert::<T>(st.index, tid, &v)),
        }
        if (st.tuples as u64).is_multiple_of(1000) {
            pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE as i32, st.tuples as i64);
        }
    }
}

/// Vectors per parallel batch: enough to keep the threads busy, few enough that the batch's
/// nodes (which do not see each other's searches) stay a small part of the graph. Each node
/// also measures the batch's earlier ones, and a batch's merges come after all its searches,
/// when what they read has left the cache: over 100,000 × 128 on 2 threads 512 took 10.8 s,
/// 64 took 9.3 s (a serial build 11.1 s).
const BATCH: usize = 64;

fn insert_pending<T>(st: &mut State<T>) {
    if let Some(g) = st.graph.as_mut() {
        if !st.pending.is_empty() {
            // Workers once the graph has left its first, one-node-at-a-time thousand.
            if st.threads > 1 && !st.workers_tried && g.len() >= 1000 {
                st.workers_tried = true;
                let room = st.limit / node_bytes(g.dim, st.meta.m as usize);
                let cap = if st.expected > 0 { (st.expected + st.expected / 8 + 4 * BATCH).min(room) } else { room };
                st.workers = unsafe { Workers::start(g, st.threads - 1, cap, BATCH) };
            }
            match st.workers.as_mut() {
                Some(w) => g.insert_batch(&st.pending, w),
                None => g.insert_batch(&st.pending, &mut Threads(&crate::glue::pool(st.threads))),
            }
        }
    }
    st.pending.clear();
}

/// Writes the in-memory graph to pages 1.. and the meta page, logs them as full pages, and drops
/// the graph.
unsafe fn flush<T: SqlScalar>(st: &mut State<T>) {
    insert_pending(st);
    if let Some(w) = st.workers.take() {
        unsafe { w.finish() };
    }
    let mut graph = st.graph.take().unwrap_or_else(|| Graph::new(st.meta.dim as usize, st.meta.opclass.graph_metric(), st.params));
    graph.finish_on((st.threads > 1).then(|| crate::glue::pool(st.threads)).as_deref());
    st.in_memory = false;
    let m = st.meta.shape();
    let esize = std::mem::size_of::<T>();
    unsafe {
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_WRITE);
        // Lay out: elements in insertion order, lists in a tuple of their own when too big.
        let cap = page_capacity();
        let (mut block, mut used, mut count) = (META_BLOCK + 1, 0usize, 0u16);
        let mut place = |len: usize| -> Id {
            if used + item_room(len) > cap {
                block += 1;
                used = 0;
                count = 0;
            }
            used += item_room(len);
            count += 1;
            tuple::id(block, count)
        };
        let n = graph.len();
        let mut ids: Vec<Id> = Vec::with_capacity(n);
        let mut lists_at: Vec<Option<Id>> = Vec::with_capacity(n);
        for i in 0..n as u32 {
            let level = graph.level(i);
            let exact = esize == 4 && vs_vector::kernels::exact_as_f16(graph.vector(i).iter().copied());
            let vbytes = graph.dim * if exact { 2 } else { esize };
            let inline = tuple::HEADER + tuple::lists_size(level, m) + vbytes;
            if item_room(inline) <= cap {
                ids.push(place(inline));
                lists_at.push(None);
            } else {
                lists_at.push(Some(place(tuple::LISTS_HEADER + tuple::lists_size(level, m))));
                ids.push(place(tuple::HEADER + vbytes));
            }
        }
        // Write, page by page, the tuples in the order they were placed.
        let mut items: Vec<(Id, Vec<u8>)> = Vec::with_capacity(n * 2);
        for i in 0..n as u32 {
            let level = graph.level(i);
            let mut lists = vec![0u8; tuple::lists_size(level, m)];
            for layer in 0..=level {
                let ns: Vec<Id> = graph.neighbours(i, layer).iter().map(|&x| ids[x as usize]).collect();
                tuple::set_neighbours(&mut lists, level, m, layer, &ns);
            }
            let v: Vec<T> = graph.vector(i).iter().map(|&x| T::from_f32(x)).collect();
            let (bytes, packed) = encode(&v);
            let mut t = tuple::element(st.heap_tids[i as usize], level, m, &bytes, lists_at[i as usize]);
            if packed {
                tuple::set_packed(&mut t);
            }
            match lists_at[i as usize] {
                None => tuple::inline_lists_mut(&mut t, m).copy_from_slice(&lists),
                Some(loc) => items.push((loc, tuple::lists_tuple(&lists, &[]))),
            }
            items.push((ids[i as usize], t));
        }
        items.sort_by_key(|(id, _)| *id);
        let mut k = 0;
        while k < items.len() {
            let blk = tuple::block_of(items[k].0);
            let b = page::Locked::extend(st.index);
            if b.block() != blk {
                corrupt(st.index, "pages were added while it was being built");
            }
            pg_sys::PageInit(b.page(), pg_sys::BLCKSZ as usize, 0);
            while k < items.len() && tuple::block_of(items[k].0) == blk {
                let off = add_item(b.page(), &items[k].1).unwrap_or_else(|| too_big(items[k].1.len()));
                debug_assert_eq!(off, tuple::offset_of(items[k].0));
                k += 1;
            }
            pg_sys::MarkBufferDirty(b.buf);
        }
        let last = items.last().map_or(META_BLOCK, |(id, _)| tuple::block_of(*id));
        if let Some(e) = graph.entry() {
            st.meta.entry = ids[e as usize];
            st.meta.entry_level = graph.level(e) as u32;
        }
        st.meta.last_block = last;
        {
            let b = page::Locked::read(st.index, META_BLOCK, true);
            init_meta(b.page(), &st.meta);
            pg_sys::MarkBufferDirty(b.buf);
        }
        if (*(*st.index).rd_rel).relpersistence == pg_sys::RELPERSISTENCE_PERMANENT as std::ffi::c_char {
            pg_sys::log_newpage_range(st.index, pg_sys::ForkNumber::MAIN_FORKNUM, 0, last + 1, true);
        }
        st.heap_tids = Vec::new();
    }
}

/// A quantized build's first pass: the mean of the rows as the centroid, written with the
/// dimension to the meta page, which is logged whole first (the rows then go in as logged
/// inserts, not as pages logged at the end).
unsafe fn quantized_start<T: SqlScalar>(heap: pg_sys::Relation, index: pg_sys::Relation, info: *mut pg_sys::IndexInfo, meta: Meta) -> Meta {
    unsafe {
        if (*(*index).rd_rel).relpersistence == pg_sys::RELPERSISTENCE_PERMANENT as std::ffi::c_char {
            pg_sys::log_newpage_range(index, pg_sys::ForkNumber::MAIN_FORKNUM, 0, 1, true);
        }
        let mut mean = Mean::<T> { meta, sum: Vec::new(), n: 0, row: RowContext::default(), _t: std::marker::PhantomData };
        pg_sys::table_index_build_scan(heap, index, info, true, false, Some(add_to_mean::<T>), &mut mean as *mut Mean<T> as *mut _, std::ptr::null_mut());
        if mean.n > 0 {
            let centroid: Vec<f32> = mean.sum.iter().map(|s| (s / mean.n as f64) as f32).collect();
            let q = quant::meta_for(centroid.len(), quant::write_centroid(index, &centroid));
            page::update_meta(index, |mm| {
                mm.dim = centroid.len() as u32;
                mm.quant = Some(q);
            });
        }
        page::read_meta(index)
    }
}

struct Mean<T> {
    meta: Meta,
    sum: Vec<f64>,
    n: usize,
    row: RowContext,
    _t: std::marker::PhantomData<T>,
}

#[pg_guard]
unsafe extern "C-unwind" fn add_to_mean<T: SqlScalar>(
    _index: pg_sys::Relation,
    _tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    unsafe {
        let st = &mut *(state as *mut Mean<T>);
        let meta = st.meta;
        let Some(v) = st.row.next(|| prepare::<T>(*values, *isnull, &meta)) else { return };
        if st.sum.is_empty() {
            // The first row: its length is the dimension the others are checked against.
            st.meta.dim = v.len() as u32;
            st.sum = vec![0.0; v.len()];
        }
        st.sum.iter_mut().zip(&v).for_each(|(s, x)| *s += x.to_f32() as f64);
        st.n += 1;
        if st.n.is_multiple_of(1000) {
            pg_sys::vacuum_delay_point();
        }
    }
}

/// The meta page of an index on this relation's column, from its options, opclass and typmod.
unsafe fn new_meta(index: pg_sys::Relation) -> Meta {
    unsafe {
        let (m, ef) = super::options::options(index);
        let opclass = Opclass::of_index(index);
        let typmod = (*(*(*index).rd_att).attrs.as_ptr()).atttypmod;
        let dim = typmod.max(0) as usize;
        let quantized = super::options::quantize(index);
        if quantized && *(*(*index).rd_index).indkey.values.as_slice(1).first().unwrap_or(&0) == 0 {
            // Scans rerank with the column's values from the table: an expression has none.
            error(ERRCODE_FEATURE_NOT_SUPPORTED, "a quantized vs_hnsw index needs a column, not an expression");
        }
        if quantized && opclass.metric == Metric::L1 {
            // RaBitQ estimates inner products (L2 and cosine follow from them), not L1.
            error(ERRCODE_FEATURE_NOT_SUPPORTED, "a quantized vs_hnsw index orders by L2, inner product or cosine, not L1");
        }
        match opclass.kind {
            Kind::F32 => check_dim::<f32>(dim, 0, quantized),
            Kind::F16 => check_dim::<f16>(dim, 0, quantized),
        }
        // The quantizer's centroid comes with the dimension: at the build from the rows, or at
        // the first insert.
        let quant = quantized.then_some(QuantMeta { seed: quant::SEED, centroid: NO_ENTRY, padded: 0 });
        Meta::new(dim as u32, m, ef, opclass, quant)
    }
}

unsafe fn build<T: SqlScalar>(heap: pg_sys::Relation, index: pg_sys::Relation, info: *mut pg_sys::IndexInfo) -> f64 {
    unsafe {
        let mut meta = new_meta(index);
        {
            // The meta page first, so block numbers of elements start at 1.
            let b = page::Locked::extend(index);
            init_meta(b.page(), &meta);
            pg_sys::MarkBufferDirty(b.buf);
        }
        if meta.quant.is_some() {
            meta = quantized_start::<T>(heap, index, info, meta);
        }
        let params = Params { m: meta.m as usize, ef_construction: meta.ef_construction as usize, seed: 0x5eed };
        let mut st = State::<T> {
            index,
            meta,
            graph: None,
            params,
            // Codes go in as inserts do (the in-memory graph holds vectors).
            in_memory: meta.quant.is_none(),
            pending: Vec::new(),
            threads: 1 + pg_sys::plan_create_index_workers((*heap).rd_id, (*index).rd_id).max(0) as usize,
            workers: None,
            workers_tried: false,
            expected: (*(*heap).rd_rel).reltuples.max(0.0) as usize,
            heap_tids: Vec::new(),
            limit: pg_sys::maintenance_work_mem as usize * 1024,
            tuples: 0.0,
            row: RowContext::default(),
            _t: std::marker::PhantomData,
        };
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_LOAD);
        let total = (*(*heap).rd_rel).reltuples.max(0.0) as i64;
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL as i32, total);
        // Codes go in as inserts do, and those can run side by side on the workers (with rows,
        // hence a centroid, to insert).
        let quantized = st.meta.quant.is_some_and(|q| q.centroid != NO_ENTRY);
        if quantized && st.threads > 1 && parallel_insert::allowed(index) {
            if let Some(tuples) = parallel_insert::build(heap, index, info, st.threads - 1) {
                pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE as i32, tuples as i64);
                return tuples;
            }
        }
        pg_sys::table_index_build_scan(heap, index, info, true, true, Some(callback::<T>), &mut st as *mut State<T> as *mut _, std::ptr::null_mut());
        if st.in_memory {
            flush::<T>(&mut st);
        }
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE as i32, st.tuples as i64);
        st.tuples
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambuild(heap: pg_sys::Relation, index: pg_sys::Relation, info: *mut pg_sys::IndexInfo) -> *mut pg_sys::IndexBuildResult {
    unsafe {
        if page::blocks(index) != 0 {
            error!("index \"{}\" already contains data", std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr()).to_string_lossy());
        }
        let tuples = match Opclass::of_index(index).kind {
            Kind::F32 => build::<f32>(heap, index, info),
            Kind::F16 => build::<f16>(heap, index, info),
        };
        let r = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBuildResult>()) as *mut pg_sys::IndexBuildResult;
        (*r).heap_tuples = tuples;
        (*r).index_tuples = tuples;
        r
    }
}

/// The init fork of an unlogged index: an empty meta page.
#[pg_guard]
pub unsafe extern "C-unwind" fn ambuildempty(index: pg_sys::Relation) {
    unsafe {
        let meta = new_meta(index);
        let buf = pg_sys::ReadBufferExtended(
            index,
            pg_sys::ForkNumber::INIT_FORKNUM,
            pg_sys::InvalidBlockNumber,
            pg_sys::ReadBufferMode::RBM_NORMAL,
            std::ptr::null_mut(),
        );
        pg_sys::LockBuffer(buf, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32);
        let x = page::Xlog::start(index);
        init_meta(x.register(buf, true), &meta);
        x.finish();
        pg_sys::UnlockReleaseBuffer(buf);
    }
}

//! Index pages in shared buffers: the meta page (block 0), element pages after it, buffer
//! locks that are released on every exit path, and generic WAL for every change.

use super::opclass::Opclass;
use crate::glue::error::error;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode::*;
use std::ffi::CStr;
use vs_hnsw::tuple::{self, Id};

pub const META_BLOCK: u32 = 0;
const MAGIC: u32 = 0x7673_686e; // "vshn"
/// 1: vectors in the elements; 2: RaBitQ codes (`quantize`), with the quantizer's fields. Both
/// with 12-byte neighbour slots (`Shape::wide`), as written before 0.7; 3 and 4 are the same
/// with 6-byte slots.
const VERSION: u32 = 1;
const VERSION_QUANTIZED: u32 = 2;
const VERSION_COMPACT: u32 = 3;
const VERSION_COMPACT_QUANTIZED: u32 = 4;
/// The heavyweight lock that inserts hold shared and VACUUM takes exclusively, on a block
/// number that is never a page, so VACUUM can wait out inserts that began before it marked
/// elements deleted.
pub const UPDATE_LOCK: u32 = u32::MAX - 1;

/// The meta page's contents as stored.
#[repr(C)]
#[derive(Clone, Copy)]
struct MetaPage {
    magic: u32,
    version: u32,
    dim: u32,
    m: u32,
    ef_construction: u32,
    /// `Opclass::codes`.
    metric: u32,
    kind: u32,
    entry_level: u32,
    entry: Id,
    last_block: u32,
    _unused: u32,
    // Version 2 on: zero on a version 1 page (PageInit zeroes it).
    seed: u64,
    centroid: Id,
    padded: u32,
    _unused2: u32,
}

/// The meta page decoded.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// 0 until the first vector sets it.
    pub dim: u32,
    pub m: u32,
    pub ef_construction: u32,
    pub opclass: Opclass,
    pub entry_level: u32,
    pub entry: Id,
    /// The last page, where new elements go when the free space map has nothing.
    pub last_block: u32,
    /// Elements hold RaBitQ codes (`WITH (quantize = on)`).
    pub quant: Option<QuantMeta>,
    /// 12-byte neighbour slots: an index written before 0.7.
    pub wide: bool,
}

/// A quantized index's quantizer (`index::quant`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantMeta {
    /// The rotation's seed.
    pub seed: u64,
    /// The centroid's first chunk; NO_ENTRY until the dimension is known.
    pub centroid: Id,
    /// Dimensions after the rotation (`Rotation::padded`); 0 until the dimension is known.
    pub padded: u32,
}

pub const NO_ENTRY: Id = u64::MAX;

impl Meta {
    pub fn new(dim: u32, m: u32, ef_construction: u32, opclass: Opclass, quant: Option<QuantMeta>) -> Meta {
        Meta { dim, m, ef_construction, opclass, entry_level: 0, entry: NO_ENTRY, last_block: META_BLOCK, quant, wide: false }
    }

    /// How the index lays out its neighbour lists.
    pub fn shape(&self) -> tuple::Shape {
        if self.wide {
            tuple::Shape::wide(self.m as usize)
        } else {
            tuple::Shape::new(self.m as usize)
        }
    }

    fn stored(&self) -> MetaPage {
        let (metric, kind) = self.opclass.codes();
        let Meta { dim, m, ef_construction, entry_level, entry, last_block, quant, wide, .. } = *self;
        let (version, q) = match (quant, wide) {
            (Some(q), true) => (VERSION_QUANTIZED, q),
            (Some(q), false) => (VERSION_COMPACT_QUANTIZED, q),
            (None, true) => (VERSION, QuantMeta { seed: 0, centroid: 0, padded: 0 }),
            (None, false) => (VERSION_COMPACT, QuantMeta { seed: 0, centroid: 0, padded: 0 }),
        };
        MetaPage {
            magic: MAGIC,
            version,
            dim,
            m,
            ef_construction,
            metric,
            kind,
            entry_level,
            entry,
            last_block,
            _unused: 0,
            seed: q.seed,
            centroid: q.centroid,
            padded: q.padded,
            _unused2: 0,
        }
    }
}

impl MetaPage {
    unsafe fn decoded(&self, index: pg_sys::Relation) -> Meta {
        if self.magic != MAGIC || !(VERSION..=VERSION_COMPACT_QUANTIZED).contains(&self.version) {
            unsafe { corrupt(index, "its meta page is not a vs_hnsw meta page of this version") };
        }
        let Some(opclass) = Opclass::decode(self.metric, self.kind) else {
            unsafe { corrupt(index, &format!("its meta page names metric {} and element type {}, which no version writes", self.metric, self.kind)) };
        };
        let MetaPage { dim, m, ef_construction, entry_level, entry, last_block, seed, centroid, padded, .. } = *self;
        let quant = matches!(self.version, VERSION_QUANTIZED | VERSION_COMPACT_QUANTIZED).then_some(QuantMeta { seed, centroid, padded });
        let wide = matches!(self.version, VERSION | VERSION_QUANTIZED);
        Meta { dim, m, ef_construction, opclass, entry_level, entry, last_block, quant, wide }
    }
}

/// Raises ERRCODE_INDEX_CORRUPTED for `index`.
pub unsafe fn corrupt(index: pg_sys::Relation, what: &str) -> ! {
    let name = unsafe { CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr()) }.to_string_lossy().into_owned();
    error(ERRCODE_INDEX_CORRUPTED, format!("index \"{name}\" is corrupt: {what}; REINDEX it"))
}

pub fn too_big(len: usize) -> ! {
    error(ERRCODE_PROGRAM_LIMIT_EXCEEDED, format!("a vs_hnsw element of {len} bytes does not fit on a page"))
}

/// Usable bytes for items on an element page (no special space).
pub fn page_capacity() -> usize {
    pg_sys::BLCKSZ as usize - std::mem::size_of::<pg_sys::PageHeaderData>()
}

pub fn maxalign(n: usize) -> usize {
    (n + 7) & !7
}

/// The longest item a page holds (8,160 bytes).
pub fn largest_item() -> usize {
    (page_capacity() - std::mem::size_of::<pg_sys::ItemIdData>()) & !7
}

/// Room an item takes on a page: its aligned bytes and its line pointer.
pub fn item_room(len: usize) -> usize {
    maxalign(len) + std::mem::size_of::<pg_sys::ItemIdData>()
}

/// A pinned and locked buffer, released when dropped (also when an ERROR unwinds through).
pub struct Locked {
    pub buf: pg_sys::Buffer,
}

thread_local! {
    /// The buffer each page of the last index read was found in. A search touches hundreds of
    /// pages; `ReadRecentBuffer` checks a remembered buffer's tag instead of looking the page up
    /// in the shared buffer table, whose cache misses were a fifth of a search's time.
    static RECENT: std::cell::RefCell<(u32, u32, Vec<pg_sys::Buffer>)> = const { std::cell::RefCell::new((0, 0, Vec::new())) };
}

/// Which relation the remembered buffers are of.
unsafe fn recent_key(index: pg_sys::Relation) -> (u32, u32) {
    let node = unsafe { (*index).rd_node };
    (node.dbNode.to_u32(), node.relNode.to_u32())
}

/// Asks the CPU to start loading the buffer headers and tuples of elements about to be read,
/// so that their cache misses overlap instead of coming one after another. Only addresses are
/// computed from unlocked pages: a stale guess costs a wasted prefetch, nothing else.
pub unsafe fn prefetch(index: pg_sys::Relation, ids: &[Id]) {
    #[cfg(target_arch = "x86_64")]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let key = recent_key(index);
        RECENT.with_borrow(|r| {
            if (r.0, r.1) != key {
                return;
            }
            let page_of = |id: Id| -> Option<*const i8> {
                let hint = *r.2.get(tuple::block_of(id) as usize)?;
                (hint > 0).then(|| pg_sys::BufferBlocks.add((hint as usize - 1) * pg_sys::BLCKSZ as usize) as *const i8)
            };
            let lp_at = |page: *const i8, id: Id| page.add(std::mem::size_of::<pg_sys::PageHeaderData>() - 4 + 4 * tuple::offset_of(id) as usize);
            for &id in ids {
                if let Some(page) = page_of(id) {
                    let hint = r.2[tuple::block_of(id) as usize] as usize;
                    _mm_prefetch::<_MM_HINT_T0>(pg_sys::BufferDescriptors.add(hint - 1) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(lp_at(page, id));
                }
            }
            for &id in ids {
                if let Some(page) = page_of(id) {
                    let lp = std::ptr::read_volatile(lp_at(page, id) as *const u32);
                    let off = (lp & 0x7fff) as usize;
                    let len = ((lp >> 17) & 0x7fff) as usize;
                    if off > 0 && off + len <= pg_sys::BLCKSZ as usize {
                        for line in (0..len).step_by(64) {
                            _mm_prefetch::<_MM_HINT_T0>(page.add(off + line));
                        }
                    }
                }
            }
        });
    }
}

unsafe fn read_buffer(index: pg_sys::Relation, block: u32) -> pg_sys::Buffer {
    unsafe {
        let node = (*index).rd_node;
        let key = recent_key(index);
        let hint = RECENT.with_borrow(|r| if (r.0, r.1) == key { r.2.get(block as usize).copied().unwrap_or(0) } else { 0 });
        if hint != 0 && pg_sys::ReadRecentBuffer(node, pg_sys::ForkNumber::MAIN_FORKNUM, block, hint) {
            return hint;
        }
        let buf = pg_sys::ReadBufferExtended(index, pg_sys::ForkNumber::MAIN_FORKNUM, block, pg_sys::ReadBufferMode::RBM_NORMAL, std::ptr::null_mut());
        RECENT.with_borrow_mut(|r| {
            if (r.0, r.1) != key {
                *r = (key.0, key.1, Vec::new());
            }
            if r.2.len() <= block as usize {
                r.2.resize(block as usize + 1, 0);
            }
            r.2[block as usize] = buf;
        });
        buf
    }
}

impl Locked {
    pub unsafe fn read(index: pg_sys::Relation, block: u32, exclusive: bool) -> Locked {
        unsafe {
            let buf = read_buffer(index, block);
            pg_sys::LockBuffer(buf, if exclusive { pg_sys::BUFFER_LOCK_EXCLUSIVE } else { pg_sys::BUFFER_LOCK_SHARE } as i32);
            Locked { buf }
        }
    }

    /// A new page at the end of the index, locked exclusively.
    pub unsafe fn extend(index: pg_sys::Relation) -> Locked {
        unsafe {
            pg_sys::LockRelationForExtension(index, pg_sys::ExclusiveLock as i32);
            let buf = pg_sys::ReadBufferExtended(
                index,
                pg_sys::ForkNumber::MAIN_FORKNUM,
                pg_sys::InvalidBlockNumber,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            );
            pg_sys::LockBuffer(buf, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32);
            pg_sys::UnlockRelationForExtension(index, pg_sys::ExclusiveLock as i32);
            Locked { buf }
        }
    }

    pub fn page(&self) -> pg_sys::Page {
        unsafe { pg_sys::BufferGetPage(self.buf) }
    }

    pub fn block(&self) -> u32 {
        unsafe { pg_sys::BufferGetBlockNumber(self.buf) }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        unsafe { pg_sys::UnlockReleaseBuffer(self.buf) }
    }
}

/// Pages in the index's main fork, the meta page included.
pub unsafe fn blocks(index: pg_sys::Relation) -> u32 {
    unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) }
}

/// The bytes of item `offset`, or None when there is no such live item (freed by VACUUM).
pub unsafe fn item<'a>(page: pg_sys::Page, offset: u16) -> Option<&'a mut [u8]> {
    unsafe {
        if offset == 0 || offset > pg_sys::PageGetMaxOffsetNumber(page) {
            return None;
        }
        let iid = pg_sys::PageGetItemId(page, offset);
        if (*iid).lp_flags() != pg_sys::LP_NORMAL {
            return None;
        }
        let p = pg_sys::PageGetItem(page, iid) as *mut u8;
        Some(std::slice::from_raw_parts_mut(p, (*iid).lp_len() as usize))
    }
}

unsafe fn meta_of(page: pg_sys::Page) -> *mut MetaPage {
    unsafe { pg_sys::PageGetContents(page) as *mut MetaPage }
}

/// Lays out an empty meta page holding `meta`.
pub unsafe fn init_meta(page: pg_sys::Page, meta: &Meta) {
    unsafe {
        pg_sys::PageInit(page, pg_sys::BLCKSZ as usize, 0);
        meta_of(page).write(meta.stored());
        let header = page as *mut pg_sys::PageHeaderData;
        // Generic WAL skips the hole between pd_lower and pd_upper: the meta data must be below.
        (*header).pd_lower = (meta_of(page) as usize - page as usize + std::mem::size_of::<MetaPage>()) as u16;
    }
}

pub unsafe fn read_meta(index: pg_sys::Relation) -> Meta {
    unsafe {
        let b = Locked::read(index, META_BLOCK, false);
        meta_of(b.page()).read().decoded(index)
    }
}

/// Changes the meta page under an exclusive lock, WAL-logged.
pub unsafe fn update_meta(index: pg_sys::Relation, f: impl FnOnce(&mut Meta)) {
    unsafe {
        let b = Locked::read(index, META_BLOCK, true);
        let x = Xlog::start(index);
        let page = x.register(b.buf, false);
        let mut meta = meta_of(page).read().decoded(index);
        f(&mut meta);
        meta_of(page).write(meta.stored());
        x.finish();
    }
}

/// One generic WAL record; the registered pages are copies that become the real pages, with
/// their WAL, at `finish`.
pub struct Xlog(*mut pg_sys::GenericXLogState);

impl Xlog {
    pub unsafe fn start(index: pg_sys::Relation) -> Xlog {
        Xlog(unsafe { pg_sys::GenericXLogStart(index) })
    }
    pub unsafe fn register(&self, buf: pg_sys::Buffer, full_image: bool) -> pg_sys::Page {
        unsafe { pg_sys::GenericXLogRegisterBuffer(self.0, buf, if full_image { pg_sys::GENERIC_XLOG_FULL_IMAGE as i32 } else { 0 }) }
    }
    pub unsafe fn abort(self) {
        unsafe { pg_sys::GenericXLogAbort(self.0) }
    }
    pub unsafe fn finish(self) {
        unsafe {
            pg_sys::GenericXLogFinish(self.0);
        }
    }
}

/// Adds an item to a page; None when it does not fit.
pub unsafe fn add_item(page: pg_sys::Page, bytes: &[u8]) -> Option<u16> {
    unsafe {
        if pg_sys::PageGetFreeSpace(page) < maxalign(bytes.len()) {
            return None;
        }
        let off = pg_sys::PageAddItemExtended(page, bytes.as_ptr() as pg_sys::Item, bytes.len(), pg_sys::InvalidOffsetNumber, 0);
        (off != pg_sys::InvalidOffsetNumber).then_some(off)
    }
}

/// Stores new tuples on one page with room for all of them (a page the free space map offers,
/// the last page, or a new one), WAL-logged; returns their ids.
pub unsafe fn place(index: pg_sys::Relation, items: &[&[u8]]) -> Vec<Id> {
    let room: usize = items.iter().map(|t| item_room(t.len())).sum();
    unsafe {
        let add = |b: &Locked| -> Vec<Id> {
            let x = Xlog::start(index);
            let page = x.register(b.buf, false);
            let ids = items.iter().map(|t| tuple::id(b.block(), add_item(page, t).expect("room was checked"))).collect();
            x.finish();
            pg_sys::RecordPageWithFreeSpace(index, b.block(), pg_sys::PageGetFreeSpace(b.page()));
            ids
        };
        // Pages VACUUM freed space on, as the free space map knows them (correcting it where
        // it is stale), then the last page.
        // The map takes requests up to a whole tuple's size; the page itself is checked below.
        let request = room.min(largest_item());
        let mut candidate = pg_sys::GetPageWithFreeSpace(index, request);
        for _ in 0..8 {
            if candidate == pg_sys::InvalidBlockNumber || candidate == META_BLOCK {
                break;
            }
            let b = Locked::read(index, candidate, true);
            let free = pg_sys::PageGetFreeSpace(b.page());
            if free >= room {
                return add(&b);
            }
            drop(b);
            candidate = pg_sys::RecordAndGetPageWithFreeSpace(index, candidate, free, request);
        }
        let last = read_meta(index).last_block;
        if last != META_BLOCK {
            let b = Locked::read(index, last, true);
            if pg_sys::PageGetFreeSpace(b.page()) >= room {
                return add(&b);
            }
        }
        let b = Locked::extend(index);
        let block = b.block();
        let x = Xlog::start(index);
        let page = x.register(b.buf, true);
        pg_sys::PageInit(page, pg_sys::BLCKSZ as usize, 0);
        let ids = items.iter().map(|t| tuple::id(block, add_item(page, t).unwrap_or_else(|| too_big(t.len())))).collect();
        x.finish();
        pg_sys::RecordPageWithFreeSpace(index, block, pg_sys::PageGetFreeSpace(b.page()));
        drop(b);
        update_meta(index, |m| m.last_block = m.last_block.max(block));
        ids
    }
}

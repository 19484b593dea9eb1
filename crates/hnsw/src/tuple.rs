//! The element tuple of a vs_hnsw index page, as bytes (free of pgrx, so `cargo test` covers it).
//!
//! ```text
//! 0   heap TID (6 bytes, as PostgreSQL's ItemPointerData)
//! 6   level (u8)          7  flags (u8: ELEMENT, and DELETED once VACUUM marked it)
//! 8   neighbour block location (u32 block, u16 offset, u16 unused): NONE when inline
//! 16  inline neighbour lists, when they fit beside the vector on one page
//! ..  the vector (dim × 4 or 2 bytes)
//! ```
//! A neighbour list per layer 0..=level: `count: u16`, `unused: u16`, then `capacity(layer, m)`
//! slots of (`block: u32`, `offset: u16`): 6 bytes (`Shape`), the list padded to a multiple of 4
//! bytes. Indexes written before 0.7 have
//! 12-byte slots that also hold an unused u16 and the neighbour's distance; they are read as
//! they are and their distances ignored: a full list's pruning reads the neighbours' vectors
//! for the heuristic anyway, and the 6 bytes an edge saved put 11 elements of 128 dimensions
//! on a page instead of 8.
//! Vectors of many dimensions (2,000 f32 take 8,000 bytes) leave no room for the lists; these
//! go into a tuple of their own, found through the location in the header, with an 8-byte
//! header of which byte 7 is LISTS (so VACUUM tells the two kinds apart on a page).
//! In a quantized index (`WITH (quantize = on)`) an element holds its RaBitQ code (vs_rabitq)
//! where the vector would be, flagged CODE; the quantizer's centroid is kept in chunk tuples,
//! byte 7 CENTROID, bytes 8..16 the next chunk's location (`INLINE` after the last), then f32s.
//! A code too big for a page beside the element's header (more than 32,768 dimensions: 65,536
//! rotated bits take 8,204 bytes, a tuple at most 8,160) is SPLIT: its last bytes follow the
//! lists in the lists tuple, which such an element always has.

// The accessors are #[inline]: a scan calls them for every element it reads, from another crate
// (without it they stopped being inlined when this file left the extension crate).
use crate::select::capacity;

pub const HEADER: usize = 16;
pub const LISTS_HEADER: usize = 8;
pub const ELEMENT: u8 = 2;
pub const DELETED: u8 = 1;
pub const LISTS: u8 = 4;
/// An f32 vector stored as f16 because every element is exactly an f16 (pixel values, say):
/// half the bytes to read per distance, and no value changes.
pub const PACKED: u8 = 8;
/// The element holds a RaBitQ code, not its vector.
pub const CODE: u8 = 16;
/// A chunk of a quantized index's centroid, not an element.
pub const CENTROID: u8 = 32;
/// The element's code continues after the lists in its lists tuple.
pub const SPLIT: u8 = 64;
pub const CHUNK_HEADER: usize = 16;

/// The layout of an index's neighbour lists: m, and the bytes of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub m: usize,
    pub slot: usize,
}

impl Shape {
    pub const SLOT: usize = 6;
    /// Indexes written before 0.7: a slot also held a distance.
    pub const WIDE_SLOT: usize = 12;

    pub fn new(m: usize) -> Shape {
        Shape { m, slot: Shape::SLOT }
    }

    pub fn wide(m: usize) -> Shape {
        Shape { m, slot: Shape::WIDE_SLOT }
    }
}
/// No separate neighbour tuple: the lists are inline.
pub const INLINE: u64 = u64::MAX;

/// An element's place: block number << 16 | line pointer offset.
pub type Id = u64;

#[inline]
pub fn id(block: u32, offset: u16) -> Id {
    (block as u64) << 16 | offset as u64
}
#[inline]
pub fn block_of(id: Id) -> u32 {
    (id >> 16) as u32
}
#[inline]
pub fn offset_of(id: Id) -> u16 {
    id as u16
}

/// Bytes of the neighbour lists of a node on `level`.
#[inline]
pub fn lists_size(level: usize, s: Shape) -> usize {
    (0..=level).map(|l| list_size(l, s)).sum()
}

/// Bytes of one layer's list, a multiple of 4: the vector after the lists is read as f32s in
/// place, and with an odd m an upper layer's 6-byte slots would leave it 2 bytes off.
#[inline]
fn list_size(layer: usize, s: Shape) -> usize {
    4 + (capacity(layer, s.m) * s.slot).next_multiple_of(4)
}

#[inline]
fn list_at(level: usize, s: Shape, layer: usize) -> usize {
    assert!(layer <= level, "layer {layer} above the node's level {level}");
    lists_size(layer, s) - list_size(layer, s)
}

/// Writes a new element; `lists` when the neighbour lists are inline, else the location of
/// their own tuple. Returns the bytes.
pub fn element(heap_tid: [u8; 6], level: usize, s: Shape, vector: &[u8], separate: Option<Id>) -> Vec<u8> {
    let lists = if separate.is_none() { lists_size(level, s) } else { 0 };
    let mut t = vec![0u8; HEADER + lists + vector.len()];
    t[..6].copy_from_slice(&heap_tid);
    t[6] = level as u8;
    t[7] = ELEMENT;
    let loc = separate.unwrap_or(INLINE);
    t[8..12].copy_from_slice(&((loc >> 16) as u32).to_ne_bytes());
    t[12..14].copy_from_slice(&(loc as u16).to_ne_bytes());
    t[HEADER + lists..].copy_from_slice(vector);
    t
}

/// Neighbour lists (`lists_size` bytes) as a tuple of their own, then a split code's `tail`.
pub fn lists_tuple(lists: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; LISTS_HEADER];
    t[7] = LISTS;
    t.extend_from_slice(lists);
    t.extend_from_slice(tail);
    t
}

/// The tail of a split code in the lists tuple `t` of an element on `level`; None when `t` is
/// no lists tuple or ends within its lists.
#[inline]
pub fn code_tail(t: &[u8], level: usize, s: Shape) -> Option<&[u8]> {
    let start = LISTS_HEADER + lists_size(level, s);
    (t.len() >= start && t[7] == LISTS).then(|| &t[start..])
}

/// The lists in a lists tuple.
#[inline]
pub fn lists_body(t: &mut [u8]) -> &mut [u8] {
    &mut t[LISTS_HEADER..]
}

#[inline]
pub fn is_element(t: &[u8]) -> bool {
    t.len() >= HEADER && t[7] & ELEMENT != 0
}

/// An element tuple, read.
pub struct ElementTuple<'a>(pub &'a [u8]);

impl<'a> ElementTuple<'a> {
    #[inline]
    pub fn heap_tid(&self) -> [u8; 6] {
        self.0[..6].try_into().unwrap()
    }
    #[inline]
    pub fn level(&self) -> usize {
        self.0[6] as usize
    }
    #[inline]
    pub fn deleted(&self) -> bool {
        self.0[7] & DELETED != 0
    }
    #[inline]
    pub fn packed(&self) -> bool {
        self.0[7] & PACKED != 0
    }
    #[inline]
    pub fn is_code(&self) -> bool {
        self.0[7] & CODE != 0
    }
    /// The code's tail is in the lists tuple (`code_tail`).
    #[inline]
    pub fn split(&self) -> bool {
        self.0[7] & SPLIT != 0
    }
    /// Where the neighbour lists are, when not inline.
    #[inline]
    pub fn separate(&self) -> Option<Id> {
        let blk = u32::from_ne_bytes(self.0[8..12].try_into().unwrap());
        let off = u16::from_ne_bytes(self.0[12..14].try_into().unwrap());
        (blk != u32::MAX).then(|| id(blk, off))
    }
    /// The inline neighbour lists (empty when separate).
    #[inline]
    pub fn inline_lists(&self, s: Shape) -> &'a [u8] {
        if self.separate().is_some() {
            &[]
        } else {
            &self.0[HEADER..HEADER + lists_size(self.level(), s)]
        }
    }
    #[inline]
    pub fn vector_bytes(&self, s: Shape) -> &'a [u8] {
        let lists = if self.separate().is_some() { 0 } else { lists_size(self.level(), s) };
        &self.0[HEADER + lists..]
    }
}

pub fn set_code(t: &mut [u8]) {
    t[7] |= CODE;
}

pub fn set_split(t: &mut [u8]) {
    t[7] |= SPLIT;
}

/// A centroid chunk: `values` (f32 bytes), then the chunk at `next` (or none: `INLINE`).
pub fn centroid_chunk(next: Id, values: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; CHUNK_HEADER];
    t[7] = CENTROID;
    t[8..16].copy_from_slice(&next.to_ne_bytes());
    t.extend_from_slice(values);
    t
}

/// A centroid chunk's values and the next chunk's location; None for another kind of tuple.
pub fn read_chunk(t: &[u8]) -> Option<(&[u8], Option<Id>)> {
    if t.len() < CHUNK_HEADER || t[7] != CENTROID {
        return None;
    }
    let next = u64::from_ne_bytes(t[8..16].try_into().unwrap());
    Some((&t[CHUNK_HEADER..], (next != INLINE).then_some(next)))
}

pub fn set_packed(t: &mut [u8]) {
    t[7] |= PACKED;
}

pub fn set_deleted(t: &mut [u8]) {
    t[7] |= DELETED;
}

/// The inline lists of an element tuple, to change in place.
#[inline]
pub fn inline_lists_mut(t: &mut [u8], s: Shape) -> &mut [u8] {
    let n = lists_size(t[6] as usize, s);
    &mut t[HEADER..HEADER + n]
}

/// The neighbours of one layer in a lists block.
#[inline]
pub fn neighbours(lists: &[u8], level: usize, s: Shape, layer: usize) -> impl Iterator<Item = Id> + '_ {
    let at = list_at(level, s, layer);
    let count = u16::from_ne_bytes(lists[at..at + 2].try_into().unwrap()) as usize;
    (0..count.min(capacity(layer, s.m))).map(move |i| {
        let x = &lists[at + 4 + i * s.slot..][..6];
        id(u32::from_ne_bytes(x[..4].try_into().unwrap()), u16::from_ne_bytes(x[4..6].try_into().unwrap()))
    })
}

/// Replaces the list of one layer (at most its capacity is kept).
pub fn set_neighbours(lists: &mut [u8], level: usize, s: Shape, layer: usize, ns: &[Id]) {
    let at = list_at(level, s, layer);
    let n = ns.len().min(capacity(layer, s.m));
    lists[at..at + 2].copy_from_slice(&(n as u16).to_ne_bytes());
    for (i, &nid) in ns[..n].iter().enumerate() {
        let x = &mut lists[at + 4 + i * s.slot..][..s.slot];
        x[..4].copy_from_slice(&block_of(nid).to_ne_bytes());
        x[4..6].copy_from_slice(&offset_of(nid).to_ne_bytes());
        if s.slot == Shape::WIDE_SLOT {
            // No longer read; a 0.6 library that still reads it (a backend started before the
            // upgrade) takes infinity for "far", where 0 would make every edge a copy.
            x[6..8].fill(0);
            x[8..12].copy_from_slice(&f32::INFINITY.to_ne_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_element_reads_back_what_was_written() {
        let v: Vec<u8> = (0..32u8).collect();
        let s = Shape::new(4);
        let mut t = element([1, 2, 3, 4, 5, 6], 2, s, &v, None);
        let e = ElementTuple(&t);
        assert_eq!((e.heap_tid(), e.level(), e.deleted(), e.separate()), ([1, 2, 3, 4, 5, 6], 2, false, None));
        assert_eq!(e.vector_bytes(s), &v[..]);
        assert_eq!(e.inline_lists(s).len(), (4 + 8 * 6) + 2 * (4 + 4 * 6));
        assert!(is_element(&t) && !is_element(&lists_tuple(&[0; 8], &[])));
        set_deleted(&mut t);
        assert!(ElementTuple(&t).deleted());
        let sep = element([0; 6], 1, s, &v, Some(id(7, 3)));
        let e = ElementTuple(&sep);
        assert_eq!((e.separate(), e.inline_lists(s).len(), e.vector_bytes(s)), (Some(id(7, 3)), 0, &v[..]));
    }

    #[test]
    fn a_split_code_ends_after_the_lists() {
        let (level, m) = (1, Shape::new(4));
        let lists = vec![7u8; lists_size(level, m)];
        let l = lists_tuple(&lists, &[1, 2, 3]);
        assert_eq!(code_tail(&l, level, m), Some(&[1u8, 2, 3][..]));
        assert_eq!(code_tail(&lists_tuple(&lists, &[]), level, m), Some(&[][..]), "an unsplit element's lists have no tail");
        assert_eq!(code_tail(&l, level + 1, m), None, "lists of a higher level are longer than this tuple");
        let mut t = element([0; 6], level, m, &[9; 16], Some(id(3, 1)));
        set_code(&mut t);
        assert!(!ElementTuple(&t).split());
        set_split(&mut t);
        let e = ElementTuple(&t);
        assert!(e.split() && e.is_code() && !e.deleted());
        assert_eq!(e.vector_bytes(m), &[9u8; 16][..]);
    }

    #[test]
    fn centroid_chunks_are_no_elements_and_chain() {
        let mut t = element([0; 6], 0, Shape::new(4), &[1, 2, 3, 4], None);
        set_code(&mut t);
        assert!(ElementTuple(&t).is_code() && read_chunk(&t).is_none());
        let (a, b) = (centroid_chunk(id(9, 2), &[5; 8]), centroid_chunk(INLINE, &[6; 4]));
        assert!(!is_element(&a) && !is_element(&b));
        assert_eq!(read_chunk(&a), Some((&[5u8; 8][..], Some(id(9, 2)))));
        assert_eq!(read_chunk(&b), Some((&[6u8; 4][..], None)));
    }

    #[test]
    fn neighbour_lists_hold_their_capacity_per_layer() {
        // Adding and pruning edges is `store::add_edge`'s; the bytes keep what they are given.
        for s in [Shape::new(2), Shape::wide(2)] {
            let level = 1;
            let mut l = vec![0u8; lists_size(level, s)];
            let five: Vec<Id> = (0..5).map(|i| id(70_000 + i, i as u16 + 1)).collect();
            set_neighbours(&mut l, level, s, 0, &five);
            assert_eq!(neighbours(&l, level, s, 0).collect::<Vec<_>>(), five[..4], "at most capacity (2m on layer 0), in order");
            assert_eq!(neighbours(&l, level, s, 1).count(), 0, "layers are independent");
            set_neighbours(&mut l, level, s, 1, &[id(9, 9)]);
            assert_eq!(neighbours(&l, level, s, 1).collect::<Vec<_>>(), [id(9, 9)]);
            assert_eq!(neighbours(&l, level, s, 0).count(), 4);
            set_neighbours(&mut l, level, s, 0, &five[..1]);
            assert_eq!(neighbours(&l, level, s, 0).collect::<Vec<_>>(), five[..1], "a shorter list replaces a longer one");
        }
    }

    #[test]
    fn a_wide_list_reads_as_written_before_0_7() {
        // Layer 0 of an element on level 0 with m = 1, as 0.6 wrote it: count 2, then
        // (block, offset, unused, distance) twice.
        let mut l = vec![2u8, 0, 0, 0];
        for (b, o, d) in [(5u32, 3u16, 1.5f32), (80_000, 7, 0.25)] {
            l.extend(b.to_ne_bytes());
            l.extend(o.to_ne_bytes());
            l.extend([0, 0]);
            l.extend(d.to_ne_bytes());
        }
        assert_eq!(lists_size(0, Shape::wide(1)), l.len());
        assert_eq!(neighbours(&l, 0, Shape::wide(1), 0).collect::<Vec<_>>(), [id(5, 3), id(80_000, 7)]);
        assert_eq!(lists_size(0, Shape::new(1)), 4 + 2 * 6);
    }

    #[test]
    fn lists_keep_the_vector_after_them_aligned_for_f32() {
        for m in 2..=9 {
            for s in [Shape::new(m), Shape::wide(m)] {
                for level in 0..4 {
                    assert_eq!(lists_size(level, s) % 4, 0, "m {m}, level {level}, slot {}", s.slot);
                }
            }
        }
        // An even m wastes nothing: the lists are as long as their slots.
        assert_eq!(lists_size(1, Shape::new(16)), 4 + 32 * 6 + 4 + 16 * 6);
        // m = 5, level 1: 4 + 60, then 4 + 30 rounded up to 4 + 32.
        assert_eq!(lists_size(1, Shape::new(5)), 64 + 36);
        let mut l = vec![0u8; lists_size(1, Shape::new(5))];
        let ns: Vec<Id> = (1..=5).map(|i| id(i, i as u16)).collect();
        set_neighbours(&mut l, 1, Shape::new(5), 1, &ns);
        set_neighbours(&mut l, 1, Shape::new(5), 0, &ns[..2]);
        assert_eq!(neighbours(&l, 1, Shape::new(5), 1).collect::<Vec<_>>(), ns);
        assert_eq!(neighbours(&l, 1, Shape::new(5), 0).collect::<Vec<_>>(), ns[..2]);
    }
}

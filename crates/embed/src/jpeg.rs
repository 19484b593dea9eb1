//! A structural check of JPEG data before it is decoded. The decoder (zune-jpeg, lenient as a
//! browser is) fills what is missing with grey: a file whose frame header announces 6000 × 6000
//! pixels over 777 bytes of data decoded to a 6000 × 6000 grey picture and got a vector. Here
//! every scan that codes DC coefficients must hold at least one bit per 8 × 8 block it covers
//! (two for a sequential scan, DC and end-of-block), and every component must have its DC coded:
//! a Huffman code is at least one bit long, so no complete file is refused. Free of pgrx.

#[derive(Debug, PartialEq)]
pub enum JpegError {
    /// No end-of-image marker after the last scan.
    NoEnd,
    /// A scan whose entropy-coded data is too short for the blocks it covers.
    ShortScan {
        scan: usize,
        bytes: usize,
        blocks: u64,
    },
    /// A component whose DC coefficients no scan codes.
    MissingComponent(u8),
    Malformed(&'static str),
}

impl std::fmt::Display for JpegError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            JpegError::NoEnd => write!(f, "JPEG data is truncated (no end-of-image marker)"),
            JpegError::ShortScan { scan, bytes, blocks } => {
                write!(f, "JPEG data is truncated: scan {scan} holds {bytes} bytes for {blocks} blocks of the announced size")
            }
            JpegError::MissingComponent(c) => write!(f, "JPEG data is truncated: component {c} is never coded"),
            JpegError::Malformed(why) => write!(f, "malformed JPEG: {why}"),
        }
    }
}

struct Component {
    id: u8,
    h: u32,
    v: u32,
}

struct Frame {
    width: u32,
    height: u32,
    progressive: bool,
    /// Arithmetic coding can take less than a bit per block: no bound for it (and the decoder
    /// refuses it anyway).
    arithmetic: bool,
    components: Vec<Component>,
}

impl Frame {
    fn max_h(&self) -> u32 {
        self.components.iter().map(|c| c.h).max().unwrap_or(1)
    }
    fn max_v(&self) -> u32 {
        self.components.iter().map(|c| c.v).max().unwrap_or(1)
    }

    /// 8 × 8 blocks a scan of these components codes (T.81 A.2: an interleaved scan codes whole
    /// MCUs, a single-component one only the blocks that hold samples).
    fn blocks(&self, ids: &[u8]) -> u64 {
        let (hm, vm) = (self.max_h() as u64, self.max_v() as u64);
        let (w, h) = (self.width as u64, self.height as u64);
        let comps: Vec<&Component> = self.components.iter().filter(|c| ids.contains(&c.id)).collect();
        if comps.len() == 1 {
            let c = comps[0];
            let cw = (w * c.h as u64).div_ceil(hm);
            let ch = (h * c.v as u64).div_ceil(vm);
            return cw.div_ceil(8) * ch.div_ceil(8);
        }
        let mcus = w.div_ceil(8 * hm) * h.div_ceil(8 * vm);
        mcus * comps.iter().map(|c| c.h as u64 * c.v as u64).sum::<u64>()
    }
}

fn u16_at(b: &[u8], i: usize) -> Result<usize, JpegError> {
    b.get(i..i + 2).map(|s| u16::from_be_bytes([s[0], s[1]]) as usize).ok_or(JpegError::NoEnd)
}

/// The frame header (SOFn) from its length field on: precision, height, width, components.
fn frame(seg: &[u8], marker: u8) -> Result<Frame, JpegError> {
    let n = *seg.get(7).ok_or(JpegError::Malformed("short frame header"))? as usize;
    if seg.len() < 8 + 3 * n {
        return Err(JpegError::Malformed("short frame header"));
    }
    let components = (0..n)
        .map(|i| {
            let c = &seg[8 + 3 * i..];
            Component { id: c[0], h: (c[1] >> 4).max(1) as u32, v: (c[1] & 15).max(1) as u32 }
        })
        .collect();
    let (progressive, arithmetic) = (matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE), marker >= 0xC9);
    Ok(Frame { height: u16_at(seg, 3)? as u32, width: u16_at(seg, 5)? as u32, progressive, arithmetic, components })
}

/// Bytes of entropy-coded data from `start` up to the next marker that is not a restart, and
/// where that marker is. Stuffed zero bytes count for nothing.
fn entropy_data(b: &[u8], start: usize) -> (usize, Option<usize>) {
    let (mut i, mut bytes) = (start, 0);
    while i < b.len() {
        if b[i] != 0xFF {
            bytes += 1;
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            None => return (bytes, None),
            Some(0x00) => {
                bytes += 1;
                i += 2;
            }
            Some(0xD0..=0xD7) => i += 2,
            Some(0xFF) => i += 1, // fill byte before a marker
            Some(_) => return (bytes, Some(i)),
        }
    }
    (bytes, None)
}

/// Checks that the scans of a JPEG file can hold the frame it announces.
pub fn check(b: &[u8]) -> Result<(), JpegError> {
    if b.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err(JpegError::Malformed("no start-of-image marker"));
    }
    let (mut i, mut fr, mut scans) = (2, None::<Frame>, 0usize);
    let mut dc_coded: Vec<u8> = Vec::new();
    loop {
        while b.get(i) == Some(&0xFF) && b.get(i + 1) == Some(&0xFF) {
            i += 1; // fill bytes before a marker
        }
        if b.get(i) != Some(&0xFF) {
            return Err(if i >= b.len() { JpegError::NoEnd } else { JpegError::Malformed("marker expected") });
        }
        let marker = *b.get(i + 1).ok_or(JpegError::NoEnd)?;
        if marker == 0xD9 {
            break;
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            i += 2;
            continue;
        }
        let len = u16_at(b, i + 2)?;
        let seg = b.get(i + 2..i + 2 + len).ok_or(JpegError::NoEnd)?;
        match marker {
            0xC0 | 0xC1 | 0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                fr = Some(frame(seg, marker)?);
            }
            0xDA => {
                let f = fr.as_ref().ok_or(JpegError::Malformed("scan before the frame header"))?;
                let ns = *seg.get(2).ok_or(JpegError::Malformed("short scan header"))? as usize;
                let ids: Vec<u8> = (0..ns).filter_map(|k| seg.get(3 + 2 * k).copied()).collect();
                let tail = seg.get(3 + 2 * ns..3 + 2 * ns + 3).ok_or(JpegError::Malformed("short scan header"))?;
                let (ss, ah) = (tail[0], tail[2] >> 4);
                let (bytes, next) = entropy_data(b, i + 2 + len);
                let next = next.ok_or(JpegError::NoEnd)?;
                scans += 1;
                if ss == 0 && f.height > 0 && !f.arithmetic {
                    let blocks = f.blocks(&ids);
                    let bits_per_block = if f.progressive { 1 } else { 2 };
                    if (bytes as u64) * 8 < blocks * bits_per_block {
                        return Err(JpegError::ShortScan { scan: scans, bytes, blocks });
                    }
                }
                if ss == 0 && ah == 0 {
                    dc_coded.extend(&ids);
                }
                i = next;
                continue;
            }
            _ => {}
        }
        i += 2 + len;
    }
    let f = fr.ok_or(JpegError::Malformed("no frame header"))?;
    if scans == 0 {
        return Err(JpegError::NoEnd);
    }
    match f.components.iter().find(|c| !dc_coded.contains(&c.id)) {
        Some(c) => Err(JpegError::MissingComponent(c.id)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../../pg_test/data/images/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// The same data under a frame header that announces `w` × `h`.
    fn announce(mut jpeg: Vec<u8>, w: u16, h: u16) -> Vec<u8> {
        let sof = jpeg.windows(2).position(|x| x[0] == 0xFF && matches!(x[1], 0xC0 | 0xC2)).unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        jpeg
    }

    #[test]
    fn complete_files_pass_baseline_and_progressive() {
        for f in ["rocket.jpg", "chelsea_exif6.jpg", "small_baseline.jpg", "small_progressive.jpg", "chelsea_progressive.jpg"] {
            assert_eq!(check(&fixture(f)), Ok(()), "{f}");
        }
    }

    #[test]
    fn a_frame_larger_than_its_data_is_truncated() {
        for f in ["small_baseline.jpg", "small_progressive.jpg"] {
            let big = announce(fixture(f), 6000, 6000);
            assert!(matches!(check(&big), Err(JpegError::ShortScan { .. })), "{f}: {:?}", check(&big));
        }
    }

    #[test]
    fn progressive_files_cut_short_are_refused() {
        let p = fixture("chelsea_progressive.jpg");
        let scans: Vec<usize> = p.windows(2).enumerate().filter(|(_, w)| w == &[0xFF, 0xDA]).map(|(i, _)| i).collect();
        assert_eq!(check(&p[..scans[1]]), Err(JpegError::NoEnd));
        // The first (DC) scan cut to a tenth, an end marker appended: the decoder would fill
        // the rest of the picture with grey.
        let mut cut = p[..scans[0] + (scans[1] - scans[0]) / 10].to_vec();
        cut.extend_from_slice(&[0xFF, 0xD9]);
        assert!(matches!(check(&cut), Err(JpegError::ShortScan { scan: 1, .. })), "{:?}", check(&cut));
        assert_eq!(check(&[0xFF, 0xD8, 0xFF, 0xD9]), Err(JpegError::Malformed("no frame header")));
    }
}

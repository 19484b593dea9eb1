//! What backends and the embedding service say to each other over the service's Unix socket.
//!
//! A frame is a 16-byte header (magic, kind, body length; little-endian) and its body. A backend
//! keeps one connection and sends one request at a time; the service answers each with a frame
//! of the same id. Closing the connection withdraws its request: that is how a cancelled
//! backend tells the service to drop its work.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// "VSE1": a byte stream that is not ours is refused at its first frame.
pub const MAGIC: u32 = 0x5653_4531;
pub const HEADER: usize = 16;
/// The most images one request may hold (`visual_search.max_images_per_call` is at most this):
/// each costs the service a few dozen bytes of bookkeeping even when empty, and 50 million
/// empty images in a 200 MB array once took 800 MB.
pub const MAX_IMAGES: u64 = 100_000;

const EMBED: u32 = 1;
const EMBEDDED: u32 = 2;
const STATS: u32 = 3;
const STATS_REPLY: u32 = 4;

/// The caller's settings that decide a vector: requests with equal ones may share an engine
/// call. The service's own settings (threads, batch size, wait) are not here.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Wanted {
    pub model_dir: String,
    pub model: String,
    pub device: String,
    pub half_precision: bool,
    pub max_image_bytes: u64,
    pub max_image_pixels: u64,
}

#[derive(Debug, PartialEq)]
pub struct EmbedRequest {
    pub id: u64,
    pub wanted: Wanted,
    pub images: Vec<Vec<u8>>,
}

/// The engine's answer to one request (see `abi::Reply`), and how it was batched.
#[derive(Debug, PartialEq, Default)]
pub struct EmbedReply {
    pub id: u64,
    pub status: i32,
    /// The image of this request an error is about, or -1.
    pub image: i64,
    pub message: String,
    pub note: String,
    pub dims: u32,
    /// `n × dims` floats, image after image.
    pub vectors: Vec<f32>,
    /// decode, preprocess, forward (ms) of the engine call this request was part of.
    pub timings: [f64; 3],
    /// Images of the engine call this request shared.
    pub batch_images: u32,
    /// Milliseconds between its arrival and the start of its engine call.
    pub queue_ms: f64,
}

/// What the service has done since it started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStats {
    pub pid: u32,
    pub engine: String,
    /// Why the engine library could not be opened, when it could not.
    pub engine_error: Option<String>,
    pub threads: u32,
    /// Threads that run batches at once (threads / batchers each).
    pub batchers: u32,
    pub max_batch: u32,
    pub max_wait_ms: f64,
    pub uptime_s: f64,
    pub requests: u64,
    pub images: u64,
    /// Engine calls: each is one batch of coalesced requests.
    pub batches: u64,
    /// Requests withdrawn (their backend cancelled or went away) before they were answered.
    pub dropped: u64,
    pub queue_wait_ms_total: f64,
    /// Images embedded in the last 60 seconds, divided by 60 (or by the uptime when shorter).
    pub images_per_s: f64,
    /// (images in a batch, batches of that size), by size.
    pub batch_sizes: Vec<(u32, u64)>,
    /// (model, device) of each model the engine holds.
    pub models: Vec<(String, String)>,
    /// What the engine reported of libtorch (threads, CUDA) at start.
    pub info: String,
}

#[derive(Debug, PartialEq)]
pub enum Message {
    Embed(EmbedRequest),
    Embedded(EmbedReply),
    Stats { id: u64 },
    StatsReply { id: u64, stats: ServiceStats },
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// A frame's bytes.
struct Out(Vec<u8>);

impl Out {
    fn new(kind: u32) -> Out {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        Out(b)
    }
    fn u32(&mut self, v: u32) -> &mut Out {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Out {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn f64(&mut self, v: f64) -> &mut Out {
        self.u64(v.to_bits())
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Out {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn done(mut self) -> Vec<u8> {
        let len = (self.0.len() - HEADER) as u64;
        self.0[8..16].copy_from_slice(&len.to_le_bytes());
        self.0
    }
}

/// A frame's body being read; every read checks the bounds.
struct In<'a>(&'a [u8]);

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad("a frame ends early"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn f64(&mut self) -> io::Result<f64> {
        self.u64().map(f64::from_bits)
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = usize::try_from(self.u64()?).map_err(|_| bad("a length overflows"))?;
        self.take(n)
    }
    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| bad("a string is not UTF-8"))
    }
    fn end(&self) -> io::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(bad("a frame has bytes after its end"))
        }
    }
}

/// A request's frame, from borrowed images (a backend's bytea values are not copied twice).
/// The buffer is reserved fallibly: an array's images may be a gigabyte, and a failed Rust
/// allocation would abort the backend, restarting the server.
pub fn encode_embed(id: u64, w: &Wanted, images: &[&[u8]]) -> io::Result<Vec<u8>> {
    let mut o = Out::new(EMBED);
    o.u64(id).bytes(w.model_dir.as_bytes()).bytes(w.model.as_bytes()).bytes(w.device.as_bytes());
    o.u32(w.half_precision as u32).u64(w.max_image_bytes).u64(w.max_image_pixels).u64(images.len() as u64);
    o.0.try_reserve_exact(images.iter().map(|i| i.len() + 8).sum()).map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "out of memory for a request"))?;
    for i in images {
        o.bytes(i);
    }
    Ok(o.done())
}

pub fn encode(m: &Message) -> Vec<u8> {
    match m {
        Message::Embed(r) => encode_embed(r.id, &r.wanted, &r.images.iter().map(Vec::as_slice).collect::<Vec<_>>()).expect("memory for a request"),
        Message::Embedded(r) => {
            let mut o = Out::new(EMBEDDED);
            o.u64(r.id).u32(r.status as u32).u64(r.image as u64).bytes(r.message.as_bytes()).bytes(r.note.as_bytes());
            o.u32(r.dims).u64(r.vectors.len() as u64);
            o.0.reserve(r.vectors.len() * 4);
            r.vectors.iter().for_each(|v| o.0.extend_from_slice(&v.to_le_bytes()));
            r.timings.iter().for_each(|t| {
                o.f64(*t);
            });
            o.u32(r.batch_images).f64(r.queue_ms);
            o.done()
        }
        Message::Stats { id } => {
            let mut o = Out::new(STATS);
            o.u64(*id);
            o.done()
        }
        Message::StatsReply { id, stats } => {
            let mut o = Out::new(STATS_REPLY);
            o.u64(*id).bytes(serde_json::to_string(stats).expect("stats serialise").as_bytes());
            o.done()
        }
    }
}

/// The kind and body length of a header; a stranger's bytes or a body over `max_body` are
/// refused before the body is read.
pub fn header(h: &[u8; HEADER], max_body: u64) -> io::Result<(u32, u64)> {
    let magic = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
    if magic != MAGIC {
        return Err(bad("not a visual_search service frame"));
    }
    let kind = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    if len > max_body {
        return Err(bad(format!("a frame of {len} bytes is over the limit of {max_body}")));
    }
    Ok((kind, len))
}

pub fn decode(kind: u32, body: &[u8]) -> io::Result<Message> {
    let mut i = In(body);
    let m = match kind {
        EMBED => {
            let id = i.u64()?;
            let wanted = Wanted {
                model_dir: i.string()?,
                model: i.string()?,
                device: i.string()?,
                half_precision: i.u32()? != 0,
                max_image_bytes: i.u64()?,
                max_image_pixels: i.u64()?,
            };
            let n = i.u64()?;
            // Each image costs at least its 8-byte length: a count beyond that is a lie.
            if n > (i.0.len() / 8) as u64 {
                return Err(bad("a request announces more images than it holds"));
            }
            if n > MAX_IMAGES {
                return Err(bad(format!("a request of {n} images is over the limit of {MAX_IMAGES}")));
            }
            let images = (0..n).map(|_| i.bytes().map(<[u8]>::to_vec)).collect::<io::Result<_>>()?;
            Message::Embed(EmbedRequest { id, wanted, images })
        }
        EMBEDDED => {
            let (id, status, image) = (i.u64()?, i.u32()? as i32, i.u64()? as i64);
            let (message, note, dims) = (i.string()?, i.string()?, i.u32()?);
            let n = usize::try_from(i.u64()?).map_err(|_| bad("a length overflows"))?;
            let raw = i.take(n.checked_mul(4).ok_or_else(|| bad("a length overflows"))?)?;
            let vectors = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
            let timings = [i.f64()?, i.f64()?, i.f64()?];
            let (batch_images, queue_ms) = (i.u32()?, i.f64()?);
            Message::Embedded(EmbedReply { id, status, image, message, note, dims, vectors, timings, batch_images, queue_ms })
        }
        STATS => Message::Stats { id: i.u64()? },
        STATS_REPLY => {
            let id = i.u64()?;
            let stats = serde_json::from_slice(i.bytes()?).map_err(|e| bad(format!("service statistics: {e}")))?;
            Message::StatsReply { id, stats }
        }
        k => return Err(bad(format!("unknown frame kind {k}"))),
    };
    i.end()?;
    Ok(m)
}

/// The first whole frame of `buf`, and the bytes it took; None while it is incomplete.
pub fn parse(buf: &[u8], max_body: u64) -> io::Result<Option<(Message, usize)>> {
    let Some(h) = buf.first_chunk::<HEADER>() else { return Ok(None) };
    let (kind, len) = header(h, max_body)?;
    let end = HEADER as u64 + len;
    if (buf.len() as u64) < end {
        return Ok(None);
    }
    let end = end as usize;
    Ok(Some((decode(kind, &buf[HEADER..end])?, end)))
}

/// Reads one frame (blocking).
pub fn read(r: &mut impl Read, max_body: u64) -> io::Result<Message> {
    let mut h = [0u8; HEADER];
    r.read_exact(&mut h)?;
    let (kind, len) = header(&h, max_body)?;
    let mut body = Vec::new();
    body.try_reserve_exact(len as usize).map_err(|_| bad("out of memory for a frame"))?;
    r.take(len).read_to_end(&mut body)?;
    if (body.len() as u64) < len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a frame ends early"));
    }
    decode(kind, &body)
}

pub fn write(w: &mut impl Write, m: &Message) -> io::Result<()> {
    w.write_all(&encode(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> Wanted {
        Wanted {
            model_dir: "/m".into(),
            model: "fashion-vgg16".into(),
            device: "auto".into(),
            half_precision: true,
            max_image_bytes: 50 << 20,
            max_image_pixels: 40_000_000,
        }
    }

    fn round_trip(m: Message) {
        let bytes = encode(&m);
        assert_eq!(read(&mut bytes.as_slice(), 1 << 30).unwrap(), m);
        let (again, used) = parse(&bytes, 1 << 30).unwrap().unwrap();
        assert_eq!((again, used), (m, bytes.len()));
        assert!(parse(&bytes[..bytes.len() - 1], 1 << 30).unwrap().is_none());
    }

    #[test]
    fn every_message_comes_back_as_it_went() {
        round_trip(Message::Embed(EmbedRequest { id: 7, wanted: wanted(), images: vec![vec![1, 2, 3], vec![], vec![9; 1000]] }));
        round_trip(Message::Embedded(EmbedReply {
            id: 7,
            status: 12,
            image: -1,
            message: "bad".into(),
            note: "é".into(),
            dims: 2,
            vectors: vec![1.5, -0.0, f32::MIN_POSITIVE, 3.0],
            timings: [1.0, 2.0, 3.5],
            batch_images: 17,
            queue_ms: 0.25,
        }));
        round_trip(Message::Stats { id: 1 });
        let stats = ServiceStats { pid: 5, batch_sizes: vec![(1, 3), (8, 2)], models: vec![("m".into(), "Cpu".into())], ..Default::default() };
        round_trip(Message::StatsReply { id: 1, stats });
    }

    #[test]
    fn strangers_lies_and_oversized_frames_are_refused() {
        let frame = encode(&Message::Stats { id: 1 });
        let mut other = frame.clone();
        other[0] ^= 1;
        assert!(read(&mut other.as_slice(), 1 << 20).unwrap_err().to_string().contains("not a visual_search"));
        let big = encode_embed(1, &wanted(), &[&[0u8; 4096]]).unwrap();
        assert!(read(&mut big.as_slice(), 1000).unwrap_err().to_string().contains("over the limit"));
        // A request that announces a billion images in a few bytes.
        let mut lie = encode_embed(1, &wanted(), &[]).unwrap();
        let at = lie.len() - 8;
        lie[at..].copy_from_slice(&1_000_000_000u64.to_le_bytes());
        assert!(read(&mut lie.as_slice(), 1 << 20).unwrap_err().to_string().contains("more images"));
        // More images than a request may hold, each of them present.
        let empty: Vec<&[u8]> = vec![&[]; MAX_IMAGES as usize + 1];
        let many = encode_embed(1, &wanted(), &empty).unwrap();
        assert!(read(&mut many.as_slice(), 1 << 30).unwrap_err().to_string().contains("over the limit of 100000"));
        // A truncated body, and bytes past the end.
        let mut short = big.clone();
        short.truncate(big.len() - 10);
        assert!(read(&mut short.as_slice(), 1 << 20).is_err());
        let mut long = encode(&Message::Stats { id: 1 });
        long.push(0);
        long[8] += 1;
        assert!(read(&mut long.as_slice(), 1 << 20).unwrap_err().to_string().contains("after its end"));
        let mut kind = frame;
        kind[4] = 99;
        assert!(read(&mut kind.as_slice(), 1 << 20).unwrap_err().to_string().contains("unknown frame kind"));
    }
}

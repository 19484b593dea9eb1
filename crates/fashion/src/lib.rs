//! Fashion-MNIST as Debian's dataset-fashion-mnist installs it: gzipped IDX files of 28 × 28
//! grey images and their labels. The training tool reads it as images, the graph's tests as
//! pixel vectors.

use std::io::Read;
use std::path::Path;

pub const DIR: &str = "/usr/share/datasets/fashion-mnist";

pub const CLASSES: [&str; 10] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// The first rows of one split: `pixels` holds `len()` images of `height` × `width` bytes, row
/// by row.
pub struct Split {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub height: usize,
    pub width: usize,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.height * self.width;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Every image as a vector of its pixel values.
    pub fn vectors(&self) -> Vec<Vec<f32>> {
        (0..self.len()).map(|i| self.image(i).iter().map(|&p| p as f32).collect()).collect()
    }
}

fn idx(path: &Path) -> Result<(Vec<u8>, Vec<usize>), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut raw = Vec::new();
    let mut reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") { Box::new(flate2::read::GzDecoder::new(f)) } else { Box::new(f) };
    reader.read_to_end(&mut raw).map_err(|e| format!("{}: {e}", path.display()))?;
    if raw.len() < 4 || raw[2] != 0x08 {
        return Err(format!("{}: not an unsigned-byte IDX file", path.display()));
    }
    let ndim = raw[3] as usize;
    if raw.len() < 4 + 4 * ndim {
        return Err(format!("{}: truncated header", path.display()));
    }
    let dims: Vec<usize> = (0..ndim).map(|i| u32::from_be_bytes(raw[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let data = raw[4 + 4 * ndim..].to_vec();
    if data.len() != dims.iter().product::<usize>() {
        return Err(format!("{}: size does not match its header", path.display()));
    }
    Ok((data, dims))
}

/// `split` is "train" or "t10k"; `limit` keeps the first rows.
pub fn load(dir: &Path, split: &str, limit: Option<usize>) -> Result<Split, String> {
    let (mut pixels, dims) = idx(&dir.join(format!("{split}-images-idx3-ubyte.gz")))?;
    let (mut labels, _) = idx(&dir.join(format!("{split}-labels-idx1-ubyte.gz")))?;
    if dims.len() != 3 {
        return Err(format!("{split}: images are not a 3-D IDX array"));
    }
    let (n, height, width) = (dims[0].min(labels.len()).min(limit.unwrap_or(usize::MAX)), dims[1], dims[2]);
    pixels.truncate(n * height * width);
    labels.truncate(n);
    Ok(Split { pixels, labels, height, width })
}

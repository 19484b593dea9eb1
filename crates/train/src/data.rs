//! Labelled catalogues for training: Fashion-MNIST IDX files, a folder with one sub-folder of
//! images per category, or the rows of a PostgreSQL query returning (image bytea, label).

use image::RgbImage;
use std::path::Path;
use vs_embed::decode::{decode_rgb, DecodeLimits};

pub struct Catalogue {
    pub images: Vec<RgbImage>,
    pub labels: Vec<i64>,
    pub classes: Vec<String>,
    /// What the images are, for the written manifest's `source`.
    pub source: String,
}

const LIMITS: DecodeLimits = DecodeLimits { max_bytes: 50 << 20, max_pixels: 40_000_000 };

/// Fashion-MNIST (Debian's dataset-fashion-mnist); `split` is "train" or "t10k"; `limit` keeps
/// the first rows.
pub fn fashion_mnist(dir: &Path, split: &str, limit: Option<usize>) -> Result<Catalogue, String> {
    let fm = vs_fashion::load(dir, split, limit)?;
    let images = (0..fm.len())
        .map(|i| {
            let gray = fm.image(i);
            RgbImage::from_fn(fm.width as u32, fm.height as u32, |x, y| {
                let v = gray[y as usize * fm.width + x as usize];
                image::Rgb([v, v, v])
            })
        })
        .collect();
    let source = format!("Fashion-MNIST ({} {split} images)", fm.len());
    Ok(Catalogue {
        images,
        labels: fm.labels.iter().map(|&l| l as i64).collect(),
        classes: vs_fashion::CLASSES.iter().map(|s| s.to_string()).collect(),
        source,
    })
}

/// A folder of category folders of images (any format image_embed reads).
pub fn folder(dir: &Path) -> Result<Catalogue, String> {
    let mut classes: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    let mut cat = Catalogue { images: vec![], labels: vec![], classes: classes.clone(), source: String::new() };
    for (label, class) in classes.iter().enumerate() {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(class)).unwrap().flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            match decode_rgb(&bytes, &LIMITS) {
                Ok(img) => {
                    cat.images.push(img);
                    cat.labels.push(label as i64);
                }
                Err(e) => eprintln!("skipping {}: {e}", f.display()),
            }
        }
    }
    cat.source = format!("{} images of the folder {}", cat.images.len(), dir.display());
    Ok(cat)
}

/// Rows of `query` (image bytea, label text) through `psql`, as COPY text.
pub fn query(conninfo: &str, query: &str) -> Result<Catalogue, String> {
    let copy = format!("COPY ({query}) TO STDOUT");
    let out = std::process::Command::new("psql").args([conninfo, "-X", "-v", "ON_ERROR_STOP=1", "-c", &copy]).output().map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut cat = Catalogue { images: vec![], labels: vec![], classes: vec![], source: String::new() };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (img, label) = line.split_once('\t').ok_or("the query must return (image bytea, label)")?;
        let hex = img.strip_prefix("\\\\x").ok_or("the first column must be bytea")?;
        let bytes: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        let img = match decode_rgb(&bytes, &LIMITS) {
            Ok(img) => img,
            Err(e) => {
                eprintln!("skipping a row: {e}");
                continue;
            }
        };
        let label = match cat.classes.iter().position(|c| c == label) {
            Some(i) => i,
            None => {
                cat.classes.push(label.to_string());
                cat.classes.len() - 1
            }
        };
        cat.images.push(img);
        cat.labels.push(label as i64);
    }
    cat.source = format!("{} rows of a query", cat.images.len());
    Ok(cat)
}

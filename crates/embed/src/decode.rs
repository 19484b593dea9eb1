//! bytea → RGB pixels. Free of pgrx. Limits are checked from the header before any pixel buffer
//! is allocated, so a PNG that announces 60,000 × 60,000 pixels costs nothing.

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    pub max_bytes: usize,
    pub max_pixels: u64,
}

#[derive(Debug, PartialEq)]
pub enum DecodeError {
    Empty,
    TooManyBytes { bytes: usize, max: usize },
    UnknownFormat,
    TooManyPixels { width: u32, height: u32, max: u64 },
    Invalid(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "image is empty"),
            DecodeError::TooManyBytes { bytes, max } => f.write_str(&vs_engine_api::abi::too_many_bytes(*bytes, *max)),
            DecodeError::UnknownFormat => {
                write!(f, "image format not recognised (JPEG, PNG, WebP, GIF, BMP and TIFF are supported)")
            }
            DecodeError::TooManyPixels { width, height, max } => {
                write!(f, "image is {width}x{height} pixels, more than visual_search.max_image_pixels ({max})")
            }
            DecodeError::Invalid(why) => write!(f, "could not decode image: {why}"),
        }
    }
}

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, DecodeError> {
    let r = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| DecodeError::Invalid(e.to_string()))?;
    if r.format().is_none() {
        return Err(DecodeError::UnknownFormat);
    }
    Ok(r)
}

/// Decodes any supported format to 8-bit RGB: EXIF orientation applied (JPEG, WebP, TIFF), the
/// first frame of a GIF, grayscale and palette expanded, alpha dropped (as PIL's convert("RGB")).
pub fn decode_rgb(bytes: &[u8], lim: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > lim.max_bytes {
        return Err(DecodeError::TooManyBytes { bytes: bytes.len(), max: lim.max_bytes });
    }
    // A decoder bug on hostile input must not take the backend down: a panic becomes an error.
    catch_unwind(AssertUnwindSafe(|| decode_checked(bytes, lim))).unwrap_or_else(|_| Err(DecodeError::Invalid("the decoder failed on malformed data".into())))
}

fn decode_checked(bytes: &[u8], lim: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    // The JPEG decoder fills missing data with grey; a truncated upload is refused instead.
    if reader(bytes)?.format() == Some(image::ImageFormat::Jpeg) {
        super::jpeg::check(bytes).map_err(|e| DecodeError::Invalid(e.to_string()))?;
    }
    let (width, height) = reader(bytes)?.into_dimensions().map_err(|e| DecodeError::Invalid(e.to_string()))?;
    if width as u64 * height as u64 > lim.max_pixels || width == 0 || height == 0 {
        return Err(DecodeError::TooManyPixels { width, height, max: lim.max_pixels });
    }
    let mut r = reader(bytes)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // RGBA16 output plus the decoder's own buffers: bounded by the pixel count, not the header.
    limits.max_alloc = Some((width as u64 * height as u64 * 8).max(1 << 20) + (64 << 20));
    r.limits(limits);
    let mut decoder = r.into_decoder().map_err(|e| DecodeError::Invalid(e.to_string()))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| DecodeError::Invalid(e.to_string()))?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb};

    const LIM: DecodeLimits = DecodeLimits { max_bytes: 50 << 20, max_pixels: 40_000_000 };

    fn sample() -> RgbImage {
        RgbImage::from_fn(37, 23, |x, y| Rgb([(x * 7) as u8, (y * 11) as u8, ((x + y) * 3) as u8]))
    }

    fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).unwrap();
        out.into_inner()
    }

    #[test]
    fn lossless_formats_decode_to_the_same_pixels() {
        let img = DynamicImage::ImageRgb8(sample());
        for fmt in [ImageFormat::Png, ImageFormat::Bmp, ImageFormat::Tiff, ImageFormat::WebP] {
            let got = decode_rgb(&encode(&img, fmt), &LIM).unwrap();
            assert_eq!(got, sample(), "{fmt:?}");
        }
    }

    #[test]
    fn grayscale_palette_alpha_and_gif_become_rgb() {
        let gray = DynamicImage::ImageLuma8(image::GrayImage::from_fn(5, 4, |x, _| image::Luma([x as u8 * 50])));
        let got = decode_rgb(&encode(&gray, ImageFormat::Png), &LIM).unwrap();
        assert_eq!(got.get_pixel(2, 1), &Rgb([100, 100, 100]));
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(3, 3, |_, _| image::Rgba([10, 20, 30, 0])));
        assert_eq!(decode_rgb(&encode(&rgba, ImageFormat::Png), &LIM).unwrap().get_pixel(0, 0), &Rgb([10, 20, 30]));
        let gif = encode(&DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(4, 4, image::Rgba([255, 0, 0, 255]))), ImageFormat::Gif);
        assert_eq!(decode_rgb(&gif, &LIM).unwrap().get_pixel(3, 3), &Rgb([255, 0, 0]));
        let jpeg = encode(&DynamicImage::ImageRgb8(sample()), ImageFormat::Jpeg);
        assert_eq!(decode_rgb(&jpeg, &LIM).unwrap().dimensions(), (37, 23));
    }

    #[test]
    fn hostile_input_is_an_error() {
        assert_eq!(decode_rgb(b"", &LIM), Err(DecodeError::Empty));
        assert_eq!(decode_rgb(b"hello, I am text", &LIM), Err(DecodeError::UnknownFormat));
        let png = encode(&DynamicImage::ImageRgb8(sample()), ImageFormat::Png);
        assert!(matches!(decode_rgb(&png[..png.len() / 2], &LIM), Err(DecodeError::Invalid(_))));
        let jpeg = encode(&DynamicImage::ImageRgb8(sample()), ImageFormat::Jpeg);
        for cut in [jpeg.len() / 3, jpeg.len() / 2, jpeg.len() - 2] {
            assert!(matches!(decode_rgb(&jpeg[..cut], &LIM), Err(DecodeError::Invalid(_))), "cut at {cut}");
        }
        assert!(decode_rgb(&jpeg, &LIM).is_ok());
        // A frame header announcing 6000 x 6000 over 16 x 16 pixels of data (issue #13.13), baseline and progressive.
        for f in ["small_baseline.jpg", "small_progressive.jpg"] {
            let mut j = std::fs::read(format!("{}/../../pg_test/data/images/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            assert!(decode_rgb(&j, &LIM).is_ok(), "{f}");
            let sof = j.windows(2).position(|x| x[0] == 0xFF && matches!(x[1], 0xC0 | 0xC2)).unwrap();
            j[sof + 5..sof + 9].copy_from_slice(&[0x17, 0x70, 0x17, 0x70]);
            assert!(matches!(decode_rgb(&j, &LIM), Err(DecodeError::Invalid(ref why)) if why.contains("truncated")), "{f}");
        }
        assert!(matches!(decode_rgb(&png, &DecodeLimits { max_bytes: 10, max_pixels: 1 << 20 }), Err(DecodeError::TooManyBytes { .. })));
        // A PNG whose header announces 60,000 × 60,000 pixels, with a few hundred bytes of data.
        let mut huge = png.clone();
        huge[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&60_000u32.to_be_bytes());
        let crc = crc32(&huge[12..29]);
        huge[29..33].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(decode_rgb(&huge, &LIM), Err(DecodeError::TooManyPixels { width: 60_000, height: 60_000, max: 40_000_000 }));
    }

    pub fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }

    /// Random and mutated bytes of every format: the decoder may refuse them but never panics
    /// out of decode_rgb (a panic inside is caught) nor exceeds its limits.
    #[test]
    fn fuzz_random_and_mutated_images() {
        let img = DynamicImage::ImageRgb8(sample());
        let seeds: Vec<Vec<u8>> = [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Gif, ImageFormat::Bmp, ImageFormat::Tiff, ImageFormat::WebP]
            .iter()
            .map(|f| encode(&img, *f))
            .collect();
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let small = DecodeLimits { max_bytes: 1 << 20, max_pixels: 1 << 20 };
        for round in 0..3000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            match next() % 4 {
                0 => {
                    for _ in 0..1 + next() % 8 {
                        let i = (next() as usize) % bytes.len();
                        bytes[i] = next() as u8;
                    }
                }
                1 => bytes.truncate((next() as usize) % bytes.len()),
                2 => {
                    let i = (next() as usize) % bytes.len();
                    let extra: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
                    bytes.splice(i..i, extra);
                }
                _ => bytes = (0..next() % 512).map(|_| next() as u8).collect(),
            }
            if let Ok(rgb) = decode_rgb(&bytes, &small) {
                assert!(rgb.width() as u64 * rgb.height() as u64 <= small.max_pixels);
            }
        }
    }
}

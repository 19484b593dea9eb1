//! RGB pixels → normalised CHW f32 input, as torchvision's `Resize(s)`, `CenterCrop(c)`,
//! `ToTensor()`, `Normalize(mean, std)` do on a PIL image. Free of pgrx.
//!
//! The resize reproduces Pillow's bilinear resampler (a separable triangle filter widened by the
//! scale factor when shrinking, i.e. antialiased, with 22-bit fixed-point weights and an 8-bit
//! image between the horizontal and vertical passes), so that the pixels fed to the network are
//! the ones torchvision would feed it.

use image::RgbImage;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Resize so that the shorter side has this length (torchvision's `Resize(int)`); none keeps
    /// the image as it is.
    pub resize: Option<u32>,
    /// Centre crop to a square of this side; none keeps the whole (resized) image.
    pub crop: Option<u32>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index, number of taps; and the fixed-point taps.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    taps: Vec<i32>,
    ksize: usize,
}

fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support is 1
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut taps = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // `as i64` truncates toward zero, as C's (int) cast does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut total = 0.0;
        for x in 0..xmax {
            let d = ((x + xmin) as f64 - center + 0.5) / filterscale;
            w[x] = (1.0 - d.abs()).max(0.0);
            total += w[x];
        }
        for x in 0..xmax {
            let k = if total != 0.0 { w[x] / total } else { w[x] };
            let fixed = k * (1u32 << PRECISION_BITS) as f64;
            taps[xx * ksize + x] = if fixed < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { bounds, taps, ksize }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((w, h), BILINEAR)` on an RGB image.
pub fn resize_bilinear(img: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (out_w as usize, out_h as usize);
    if ow == in_w && oh == in_h {
        return img.clone();
    }
    let src = img.as_raw();
    let h = coeffs(in_w, ow);
    let v = coeffs(in_h, oh);
    // Only the rows the vertical pass reads are resampled horizontally.
    let first = v.bounds[0].0;
    let last = v.bounds[oh - 1].0 + v.bounds[oh - 1].1;
    let (tmp, tmp_w, row0) = if ow != in_w {
        let rows = last - first;
        let mut tmp = vec![0u8; rows * ow * 3];
        for y in 0..rows {
            let srow = &src[(y + first) * in_w * 3..][..in_w * 3];
            for xx in 0..ow {
                let (xmin, n) = h.bounds[xx];
                let k = &h.taps[xx * h.ksize..][..n];
                for c in 0..3 {
                    let mut acc = 1i32 << (PRECISION_BITS - 1);
                    for (x, &kx) in k.iter().enumerate() {
                        acc += srow[(x + xmin) * 3 + c] as i32 * kx;
                    }
                    tmp[(y * ow + xx) * 3 + c] = clip8(acc);
                }
            }
        }
        (tmp, ow, first)
    } else {
        (src.to_vec(), in_w, 0)
    };
    if oh == in_h && row0 == 0 && tmp.len() == oh * tmp_w * 3 {
        return RgbImage::from_raw(ow as u32, oh as u32, tmp).expect("buffer sized for the image");
    }
    let mut out = vec![0u8; ow * oh * 3];
    for yy in 0..oh {
        let (ymin, n) = v.bounds[yy];
        let k = &v.taps[yy * v.ksize..][..n];
        for xx in 0..ow * 3 {
            let mut acc = 1i32 << (PRECISION_BITS - 1);
            for (y, &ky) in k.iter().enumerate() {
                acc += tmp[(y + ymin - row0) * tmp_w * 3 + xx] as i32 * ky;
            }
            out[yy * ow * 3 + xx] = clip8(acc);
        }
    }
    RgbImage::from_raw(ow as u32, oh as u32, out).expect("buffer sized for the image")
}

/// torchvision's output size for `Resize(short)`: the shorter side becomes `short`, the longer
/// one `int(short * long / short_in)`.
pub fn resized_size(w: u32, h: u32, short: u32) -> (u32, u32) {
    let (s, l) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (short as f64 * l as f64 / s as f64) as u32;
    if w <= h { (short, new_long) } else { (new_long, short) }
}

/// torchvision's CenterCrop offsets: `int(round((size - crop) / 2))`, ties to even as Python's round.
fn crop_offset(size: u32, crop: u32) -> i64 {
    ((size as f64 - crop as f64) / 2.0).round_ties_even() as i64
}

/// Resized and centre-cropped pixels (still 8-bit), the image the network sees.
pub fn resize_and_crop(img: &RgbImage, p: &Preprocess) -> RgbImage {
    let resized = match p.resize {
        Some(s) => {
            let (w, h) = resized_size(img.width(), img.height(), s);
            resize_bilinear(img, w.max(1), h.max(1))
        }
        None => img.clone(),
    };
    let Some(c) = p.crop else { return resized };
    let (left, top) = (crop_offset(resized.width(), c), crop_offset(resized.height(), c));
    // torchvision pads with zeros when the crop is larger than the image.
    RgbImage::from_fn(c, c, |x, y| {
        let (sx, sy) = (x as i64 + left, y as i64 + top);
        if sx < 0 || sy < 0 || sx >= resized.width() as i64 || sy >= resized.height() as i64 {
            image::Rgb([0, 0, 0])
        } else {
            *resized.get_pixel(sx as u32, sy as u32)
        }
    })
}

/// The network input for one image: CHW, `(x / 255 - mean) / std` in f32, with its height and
/// width.
pub fn to_input(img: &RgbImage, p: &Preprocess) -> (Vec<f32>, u32, u32) {
    let px = resize_and_crop(img, p);
    let (w, h) = px.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, rgb) in px.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (rgb[c] as f32 / 255.0 - p.mean[c]) / p.std[c];
        }
    }
    (out, h, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_sizes_and_crop_offsets() {
        assert_eq!(resized_size(640, 480, 256), (341, 256));
        assert_eq!(resized_size(480, 640, 256), (256, 341));
        assert_eq!(resized_size(28, 28, 256), (256, 256));
        assert_eq!(crop_offset(341, 224), 58); // 58.5 rounds to even
        assert_eq!(crop_offset(256, 224), 16);
    }

    #[test]
    fn resize_to_same_size_is_identity_and_constant_images_stay_constant() {
        let img = RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8, y as u8, 3]));
        assert_eq!(resize_bilinear(&img, 9, 7), img);
        let flat = RgbImage::from_pixel(300, 200, image::Rgb([17, 128, 250]));
        for (w, h) in [(100, 50), (640, 480), (301, 199)] {
            assert!(resize_bilinear(&flat, w, h).pixels().all(|p| p.0 == [17, 128, 250]), "{w}x{h}");
        }
    }

    #[test]
    fn downscaling_averages_instead_of_aliasing() {
        // A 1-pixel checkerboard shrunk 8× must come out mid-grey, as an antialiased filter does.
        let board = RgbImage::from_fn(256, 256, |x, y| {
            let v = if (x + y) % 2 == 0 { 255 } else { 0 };
            image::Rgb([v, v, v])
        });
        let small = resize_bilinear(&board, 32, 32);
        assert!(small.pixels().all(|p| (120..=135).contains(&p[0])), "{:?}", small.get_pixel(5, 5));
    }

    #[test]
    fn normalisation_is_channel_first() {
        let img = RgbImage::from_pixel(2, 2, image::Rgb([255, 0, 51]));
        let p = Preprocess { resize: None, crop: None, mean: [0.5, 0.0, 0.2], std: [0.5, 1.0, 0.1] };
        let (x, h, w) = to_input(&img, &p);
        assert_eq!((h, w), (2, 2));
        assert_eq!(&x[0..4], &[1.0; 4]);
        assert_eq!(&x[4..8], &[0.0; 4]);
        assert!((x[8] - 0.0).abs() < 1e-6);
    }
}

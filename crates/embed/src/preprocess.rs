//! RGB pixels → normalised CHW f32 input, as torchvision's `Resize(s)`, `CenterCrop(c)`,
//! `ToTensor()`, `Normalize(mean, std)` do on a PIL image. Free of pgrx.
//!
//! The resize reproduces Pillow's bilinear resampler (a separable triangle filter widened by the
//! scale factor when shrinking, i.e. antialiased, with 22-bit fixed-point weights and an 8-bit
//! image between the horizontal and vertical passes), so that the pixels fed to the network are
//! the ones torchvision would feed it.

use image::RgbImage;

pub use vs_engine_api::manifest::Preprocess;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Why preprocessing stopped: the query was cancelled, the resized image would be too large,
/// or a buffer could not be had.
#[derive(Debug, PartialEq)]
pub enum PrepError {
    Cancelled,
    TooManyPixels { width: u64, height: u64, max: u64 },
    OutOfMemory { bytes: usize },
}

/// Asked between rows of long loops; true once the query is being cancelled.
pub type Cancel<'a> = &'a (dyn Fn() -> bool + Sync);

/// Rows between two looks at `Cancel`: a row of the widest resize is well under a millisecond.
const ROWS_PER_CHECK: usize = 64;

/// A zeroed buffer, or an error where the allocator has no room (Rust would abort the process).
pub fn buffer<T: Clone + Default>(n: usize) -> Result<Vec<T>, PrepError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| PrepError::OutOfMemory { bytes: n.saturating_mul(size_of::<T>()) })?;
    v.resize(n, T::default());
    Ok(v)
}

/// Per output pixel: first input index, number of taps; and the fixed-point taps.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    taps: Vec<i32>,
    ksize: usize,
}

/// Pillow's bilinear coefficients for the output pixels `window` of a resize from `in_size` to
/// `out_size`. Only the window is computed: the full output of a thin image resized to a
/// 256-pixel short side can be billions of pixels long, of which a crop keeps 224.
fn coeffs(in_size: usize, out_size: u64, window: std::ops::Range<u64>) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support is 1
    let ksize = support.ceil() as usize * 2 + 1;
    let n = (window.end - window.start) as usize;
    let mut bounds = Vec::with_capacity(n);
    let mut taps = vec![0i32; n * ksize];
    let mut w = vec![0f64; ksize];
    for (i, xx) in window.enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // `as i64` truncates toward zero, as C's (int) cast does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut total = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(xmax) {
            let d = ((x + xmin) as f64 - center + 0.5) / filterscale;
            *wx = (1.0 - d.abs()).max(0.0);
            total += *wx;
        }
        for x in 0..xmax {
            let k = if total != 0.0 { w[x] / total } else { w[x] };
            let fixed = k * (1u32 << PRECISION_BITS) as f64;
            taps[i * ksize + x] = if fixed < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { bounds, taps, ksize }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// A window of an image: columns `x` and rows `y`.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub x: std::ops::Range<u64>,
    pub y: std::ops::Range<u64>,
}

/// The pixels `win` of Pillow's `Image.resize((out_w, out_h), BILINEAR)` on an RGB image, each
/// one computed exactly as the full resize computes it; the rest of the output is never made.
pub fn resize_window(img: &RgbImage, out_w: u64, out_h: u64, win: &Window, cancel: Cancel) -> Result<RgbImage, PrepError> {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (ww, wh) = ((win.x.end - win.x.start) as usize, (win.y.end - win.y.start) as usize);
    if ww == 0 || wh == 0 {
        return Ok(RgbImage::new(ww as u32, wh as u32));
    }
    let src = img.as_raw();
    // Pillow skips a pass whose size does not change; then the window is a plain copy.
    let v = (out_h != in_h as u64).then(|| coeffs(in_h, out_h, win.y.clone()));
    let (first, last) = match &v {
        None => (win.y.start as usize, win.y.end as usize),
        Some(v) => (v.bounds[0].0, v.bounds[wh - 1].0 + v.bounds[wh - 1].1),
    };
    // Only the rows the vertical pass reads are resampled horizontally, and only the window's columns.
    let rows = last - first;
    let mut tmp = buffer::<u8>(rows * ww * 3)?;
    if out_w == in_w as u64 {
        for y in 0..rows {
            let srow = &src[(y + first) * in_w * 3..][..in_w * 3];
            tmp[y * ww * 3..][..ww * 3].copy_from_slice(&srow[win.x.start as usize * 3..win.x.end as usize * 3]);
        }
    } else {
        let h = coeffs(in_w, out_w, win.x.clone());
        for y in 0..rows {
            if y % ROWS_PER_CHECK == 0 && cancel() {
                return Err(PrepError::Cancelled);
            }
            let srow = &src[(y + first) * in_w * 3..][..in_w * 3];
            for xx in 0..ww {
                let (xmin, n) = h.bounds[xx];
                let k = &h.taps[xx * h.ksize..][..n];
                for c in 0..3 {
                    let mut acc = 1i32 << (PRECISION_BITS - 1);
                    for (x, &kx) in k.iter().enumerate() {
                        acc += srow[(x + xmin) * 3 + c] as i32 * kx;
                    }
                    tmp[(y * ww + xx) * 3 + c] = clip8(acc);
                }
            }
        }
    }
    let Some(v) = v else {
        return Ok(RgbImage::from_raw(ww as u32, wh as u32, tmp).expect("buffer sized for the window"));
    };
    let mut out = buffer::<u8>(ww * wh * 3)?;
    for yy in 0..wh {
        if yy % ROWS_PER_CHECK == 0 && cancel() {
            return Err(PrepError::Cancelled);
        }
        let (ymin, n) = v.bounds[yy];
        let k = &v.taps[yy * v.ksize..][..n];
        for xx in 0..ww * 3 {
            let mut acc = 1i32 << (PRECISION_BITS - 1);
            for (y, &ky) in k.iter().enumerate() {
                acc += tmp[(y + ymin - first) * ww * 3 + xx] as i32 * ky;
            }
            out[yy * ww * 3 + xx] = clip8(acc);
        }
    }
    Ok(RgbImage::from_raw(ww as u32, wh as u32, out).expect("buffer sized for the window"))
}

/// Pillow's `Image.resize((out_w, out_h), BILINEAR)` on an RGB image.
pub fn resize_bilinear(img: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let win = Window { x: 0..out_w as u64, y: 0..out_h as u64 };
    resize_window(img, out_w as u64, out_h as u64, &win, &|| false).expect("an uncancelled resize of a small image")
}

/// torchvision's output size for `Resize(short)`: the shorter side becomes `short`, the longer
/// one `int(short * long / short_in)` (wider than u32 for thin images).
pub fn resized_size(w: u32, h: u32, short: u32) -> (u64, u64) {
    let (s, l) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (short as f64 * l as f64 / s as f64) as u64;
    if w <= h {
        (short as u64, new_long)
    } else {
        (new_long, short as u64)
    }
}

/// torchvision's CenterCrop offsets: `int(round((size - crop) / 2))`, ties to even as Python's round.
fn crop_offset(size: u64, crop: u32) -> i64 {
    ((size as f64 - crop as f64) / 2.0).round_ties_even() as i64
}

/// Resized and centre-cropped pixels (still 8-bit), the image the network sees. With a crop only
/// the cropped window of the resized image is computed; without one, a resized image of more
/// than `max_pixels` is refused before it is made.
pub fn resize_and_crop(img: &RgbImage, p: &Preprocess, max_pixels: u64, cancel: Cancel) -> Result<RgbImage, PrepError> {
    let (rw, rh) = match p.resize {
        Some(s) => {
            let (w, h) = resized_size(img.width(), img.height(), s);
            (w.max(1), h.max(1))
        }
        None => (img.width() as u64, img.height() as u64),
    };
    let Some(c) = p.crop else {
        if rw.saturating_mul(rh) > max_pixels {
            return Err(PrepError::TooManyPixels { width: rw, height: rh, max: max_pixels });
        }
        return resize_window(img, rw, rh, &Window { x: 0..rw, y: 0..rh }, cancel);
    };
    let (left, top) = (crop_offset(rw, c), crop_offset(rh, c));
    let span = |off: i64, size: u64| off.max(0) as u64..(off + c as i64).clamp(0, size as i64) as u64;
    let win = Window { x: span(left, rw), y: span(top, rh) };
    let part = resize_window(img, rw, rh, &win, cancel)?;
    if part.dimensions() == (c, c) {
        return Ok(part);
    }
    // torchvision pads with zeros when the crop is larger than the image.
    let (dx, dy) = ((win.x.start as i64 - left) as u32, (win.y.start as i64 - top) as u32);
    let mut out = RgbImage::from_raw(c, c, buffer::<u8>(c as usize * c as usize * 3)?).expect("buffer sized for the crop");
    image::imageops::replace(&mut out, &part, dx as i64, dy as i64);
    Ok(out)
}

/// The network input for one image: CHW, `(x / 255 - mean) / std` in f32, with its height and
/// width.
pub fn to_input(img: &RgbImage, p: &Preprocess, max_pixels: u64, cancel: Cancel) -> Result<(Vec<f32>, u32, u32), PrepError> {
    let px = resize_and_crop(img, p, max_pixels, cancel)?;
    let (w, h) = px.dimensions();
    let plane = (w * h) as usize;
    let mut out = buffer::<f32>(3 * plane)?;
    for (i, rgb) in px.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (rgb[c] as f32 / 255.0 - p.mean[c]) / p.std[c];
        }
    }
    Ok((out, h, w))
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
        let (x, h, w) = to_input(&img, &p, u64::MAX, &|| false).unwrap();
        assert_eq!((h, w), (2, 2));
        assert_eq!(&x[0..4], &[1.0; 4]);
        assert_eq!(&x[4..8], &[0.0; 4]);
        assert!((x[8] - 0.0).abs() < 1e-6);
    }

    #[test]
    fn a_cropped_window_is_the_crop_of_the_full_resize() {
        let img = RgbImage::from_fn(7, 300, |x, y| image::Rgb([(x * 30) as u8, (y % 251) as u8, ((x + y) * 7) as u8]));
        let p = Preprocess { resize: Some(64), crop: Some(48), mean: [0.0; 3], std: [1.0; 3] };
        let (rw, rh) = resized_size(7, 300, 64);
        let full = resize_bilinear(&img, rw as u32, rh as u32);
        let (left, top) = (crop_offset(rw, 48) as u32, crop_offset(rh, 48) as u32);
        let want = image::imageops::crop_imm(&full, left, top, 48, 48).to_image();
        assert_eq!(resize_and_crop(&img, &p, u64::MAX, &|| false).unwrap(), want);
        // a crop wider than the resized image is padded with zeros, as torchvision does
        let q = Preprocess { resize: Some(8), crop: Some(12), ..p.clone() };
        let out = resize_and_crop(&RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9])), &q, u64::MAX, &|| false).unwrap();
        assert_eq!((out.get_pixel(0, 0), out.get_pixel(5, 5)), (&image::Rgb([0, 0, 0]), &image::Rgb([9, 9, 9])));
    }

    /// A 1 × 1,000,000 image resized to a 256-pixel short side would be 256 × 256,000,000
    /// pixels (the old resize made 4 GB of it); the crop's window is all that is computed.
    #[test]
    fn thin_images_cost_their_crop_not_their_resize() {
        let thin = RgbImage::from_pixel(1, 1_000_000, image::Rgb([200, 10, 10]));
        let p = Preprocess { resize: Some(256), crop: Some(224), mean: [0.0; 3], std: [1.0; 3] };
        let t = std::time::Instant::now();
        let out = resize_and_crop(&thin, &p, 40_000_000, &|| false).unwrap();
        assert_eq!(out.dimensions(), (224, 224));
        assert!(out.pixels().all(|px| px.0 == [200, 10, 10]));
        eprintln!("1 x 1,000,000 → 224 x 224 in {:?}", t.elapsed());
        let wide = RgbImage::from_pixel(1_000_000, 2, image::Rgb([1, 2, 3]));
        assert_eq!(resize_and_crop(&wide, &p, 40_000_000, &|| false).unwrap().dimensions(), (224, 224));
        // without a crop the whole resized image is the input: refused past max_pixels
        let q = Preprocess { crop: None, ..p };
        assert_eq!(resize_and_crop(&thin, &q, 40_000_000, &|| false), Err(PrepError::TooManyPixels { width: 256, height: 256_000_000, max: 40_000_000 }));
    }

    #[test]
    fn a_cancel_stops_a_resize() {
        let big = RgbImage::from_pixel(4000, 4000, image::Rgb([1, 2, 3]));
        let p = Preprocess { resize: Some(256), crop: Some(224), mean: [0.0; 3], std: [1.0; 3] };
        assert_eq!(resize_and_crop(&big, &p, u64::MAX, &|| true), Err(PrepError::Cancelled));
    }
}

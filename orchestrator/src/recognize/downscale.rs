//! Frames scaled down before they go to a VLM: a 1280x720 frame costs a vision model
//! about 4 times the tokens (and the request 3-4 times the bytes) of the same frame at
//! 768 px, for no item a packer could miss at that size.

use crate::jpeg::{Decoded, decode_bgr};

/// `jpeg` with its long side brought to `max_side` (box filter: every source pixel
/// counts, so labels stay legible) and re-encoded at `quality`; `None` when it already
/// fits and is sent as stored.
pub fn fit(jpeg: &[u8], max_side: u32, quality: u8) -> Result<Option<Vec<u8>>, String> {
    let img = decode_bgr(jpeg)?;
    let long = img.width.max(img.height);
    if max_side == 0 || long <= max_side as usize {
        return Ok(None);
    }
    let scale = max_side as f64 / long as f64;
    let w = ((img.width as f64 * scale).round() as usize).max(1);
    let h = ((img.height as f64 * scale).round() as usize).max(1);
    let small = box_resize(&img, w, h);
    let mut out = Vec::with_capacity(w * h / 4);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    // 4:2:0 as the pipelines' jpegenc stores frames: chroma at full resolution would make
    // the smaller frame the larger file.
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    encoder
        .encode(
            &small,
            u16::try_from(w).map_err(|_| "too wide")?,
            u16::try_from(h).map_err(|_| "too tall")?,
            jpeg_encoder::ColorType::Bgr,
        )
        .map_err(|e| format!("cannot encode the scaled frame: {e}"))?;
    Ok(Some(out))
}

/// Area-average resize of packed 3-channel pixels to `w` x `h` (smaller than the source).
fn box_resize(img: &Decoded, w: usize, h: usize) -> Vec<u8> {
    let (sw, sh) = (img.width, img.height);
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        let y0 = y * sh / h;
        let y1 = ((y + 1) * sh / h).max(y0 + 1);
        for x in 0..w {
            let x0 = x * sw / w;
            let x1 = ((x + 1) * sw / w).max(x0 + 1);
            let mut sum = [0u32; 3];
            for sy in y0..y1 {
                let row = &img.data[(sy * sw + x0) * 3..(sy * sw + x1) * 3];
                for p in row.chunks_exact(3) {
                    sum[0] += u32::from(p[0]);
                    sum[1] += u32::from(p[1]);
                    sum[2] += u32::from(p[2]);
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            let o = (y * w + x) * 3;
            for c in 0..3 {
                out[o + c] = ((sum[c] + n / 2) / n) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w` x `h` JPEG: left half black, right half white.
    fn halves(w: u16, h: u16) -> Vec<u8> {
        let mut px = Vec::with_capacity(usize::from(w) * usize::from(h) * 3);
        for _ in 0..h {
            for x in 0..w {
                let v = if x < w / 2 { 0 } else { 255 };
                px.extend_from_slice(&[v, v, v]);
            }
        }
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(&px, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    #[test]
    fn a_large_frame_is_scaled_to_its_long_side_and_keeps_its_picture() {
        let big = halves(1280, 720);
        let small = fit(&big, 768, 85).unwrap().expect("scaled");
        let d = decode_bgr(&small).unwrap();
        assert_eq!((d.width, d.height), (768, 432));
        assert!(
            small.len() < big.len(),
            "{} -> {} bytes",
            big.len(),
            small.len()
        );
        let at = |x: usize, y: usize| d.data[(y * d.width + x) * 3];
        assert!(at(100, 200) < 30, "left stays dark: {}", at(100, 200));
        assert!(at(700, 200) > 225, "right stays light: {}", at(700, 200));
    }

    #[test]
    fn a_frame_that_fits_is_sent_as_stored() {
        let f = halves(640, 360);
        assert_eq!(fit(&f, 768, 85).unwrap(), None);
        assert_eq!(
            fit(&halves(1280, 720), 0, 85).unwrap(),
            None,
            "0: never scaled"
        );
        assert!(fit(b"not a jpeg", 768, 85).is_err());
    }
}

//! 8-bit BGR images, conversion from the planes of raw video frames, and the change
//! signature.
//!
//! Conversion only touches the requested rectangle: with a region of interest the rest of
//! the frame is never read, which keeps the per-frame cost proportional to the ROI. How a
//! frame's planes are found is the caller's business (the plugin maps GStreamer frames).

use super::OcrError;

/// A packed 8-bit image in B, G, R byte order (what the PP-OCR models were trained on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgrImage {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, rows without padding.
    pub data: Vec<u8>,
}

/// An axis-aligned rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    /// Whether the rectangle is non-empty and lies inside a `width` x `height` frame.
    pub fn fits_in(&self, width: u32, height: u32) -> bool {
        self.width > 0
            && self.height > 0
            && u64::from(self.x) + u64::from(self.width) <= u64::from(width)
            && u64::from(self.y) + u64::from(self.height) <= u64::from(height)
    }
}

impl BgrImage {
    /// A uniformly coloured image.
    pub fn filled(width: u32, height: u32, bgr: [u8; 3]) -> Self {
        let data = bgr
            .iter()
            .copied()
            .cycle()
            .take(width as usize * height as usize * 3)
            .collect();
        BgrImage {
            width,
            height,
            data,
        }
    }

    /// The pixel at (`x`, `y`) as `[b, g, r]`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Copies a sub-rectangle.
    pub fn crop(&self, rect: Rect) -> Result<BgrImage, OcrError> {
        if !rect.fits_in(self.width, self.height) {
            return Err(OcrError::Input(format!(
                "crop {rect:?} is outside the {}x{} image",
                self.width, self.height
            )));
        }
        let mut data = Vec::with_capacity(rect.width as usize * rect.height as usize * 3);
        for y in rect.y..rect.y + rect.height {
            let start = (y as usize * self.width as usize + rect.x as usize) * 3;
            data.extend_from_slice(&self.data[start..start + rect.width as usize * 3]);
        }
        Ok(BgrImage {
            width: rect.width,
            height: rect.height,
            data,
        })
    }

    /// Converts `rect` (the whole frame when `None`) of a `width` x `height` frame given
    /// as planes, refusing a rectangle that does not lie inside the frame.
    pub fn from_planes(
        layout: PixelLayout,
        planes: &[Plane<'_>],
        (width, height): (u32, u32),
        rect: Option<Rect>,
        yuv: &YuvCoefficients,
    ) -> Result<BgrImage, OcrError> {
        let rect = rect.unwrap_or(Rect::new(0, 0, width, height));
        if !rect.fits_in(width, height) {
            return Err(OcrError::Input(format!(
                "region {rect:?} is outside the {width}x{height} frame"
            )));
        }
        Ok(convert(layout, planes, rect, yuv))
    }
}

/// One plane of a raw frame: its bytes and its row stride.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    pub data: &'a [u8],
    pub stride: usize,
}

/// How the pixels of a supported format are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelLayout {
    /// One plane, `bpp` bytes per pixel, with the byte offsets of R, G and B.
    Packed {
        bpp: usize,
        r: usize,
        g: usize,
        b: usize,
    },
    Gray8,
    I420,
    Nv12,
}

/// The Y'CbCr matrix of a YUV frame; anything else decodes as BT.601.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMatrix {
    #[default]
    Bt601,
    Bt709,
    Bt2020,
    Smpte240m,
    Fcc,
}

/// Fixed-point (16 fractional bits) Y'CbCr to R'G'B' factors for one matrix and range.
#[derive(Debug, Clone, Copy)]
pub struct YuvCoefficients {
    y_offset: i32,
    y_scale: i32,
    rv: i32,
    gu: i32,
    gv: i32,
    bu: i32,
}

impl YuvCoefficients {
    /// `full_range`: levels 0..=255 rather than the studio range 16..=235.
    pub fn new(matrix: ColorMatrix, full_range: bool) -> Self {
        let (kr, kb) = match matrix {
            ColorMatrix::Bt709 => (0.2126, 0.0722),
            ColorMatrix::Bt2020 => (0.2627, 0.0593),
            ColorMatrix::Smpte240m => (0.212, 0.087),
            ColorMatrix::Fcc => (0.30, 0.11),
            ColorMatrix::Bt601 => (0.299, 0.114),
        };
        let full = full_range;
        let (y_offset, y_scale, c_scale) = if full {
            (0, 1.0, 1.0)
        } else {
            (16, 255.0 / 219.0, 255.0 / 224.0)
        };
        let kg = 1.0 - kr - kb;
        let fx = |v: f64| (v * 65536.0).round() as i32;
        YuvCoefficients {
            y_offset,
            y_scale: fx(y_scale),
            rv: fx(2.0 * (1.0 - kr) * c_scale),
            gu: fx(2.0 * kb * (1.0 - kb) / kg * c_scale),
            gv: fx(2.0 * kr * (1.0 - kr) / kg * c_scale),
            bu: fx(2.0 * (1.0 - kb) * c_scale),
        }
    }

    #[inline]
    fn bgr(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let c = (i32::from(y) - self.y_offset) * self.y_scale + (1 << 15);
        let d = i32::from(u) - 128;
        let e = i32::from(v) - 128;
        let clamp = |x: i32| (x >> 16).clamp(0, 255) as u8;
        [
            clamp(c + self.bu * d),
            clamp(c - self.gu * d - self.gv * e),
            clamp(c + self.rv * e),
        ]
    }
}

/// Converts `rect` of a frame given as planes; `rect` must lie inside the frame.
pub fn convert(
    layout: PixelLayout,
    planes: &[Plane<'_>],
    rect: Rect,
    yuv: &YuvCoefficients,
) -> BgrImage {
    let (w, h) = (rect.width as usize, rect.height as usize);
    let (x0, y0) = (rect.x as usize, rect.y as usize);
    let mut data = vec![0u8; w * h * 3];
    for (row, out) in data.chunks_exact_mut(w * 3).enumerate() {
        let y = y0 + row;
        match layout {
            PixelLayout::Packed { bpp, r, g, b } => {
                let p = &planes[0];
                let src = &p.data[y * p.stride + x0 * bpp..][..w * bpp];
                for (o, s) in out.chunks_exact_mut(3).zip(src.chunks_exact(bpp)) {
                    o[0] = s[b];
                    o[1] = s[g];
                    o[2] = s[r];
                }
            }
            PixelLayout::Gray8 => {
                let p = &planes[0];
                let src = &p.data[y * p.stride + x0..][..w];
                for (o, &s) in out.chunks_exact_mut(3).zip(src) {
                    o.fill(s);
                }
            }
            PixelLayout::I420 | PixelLayout::Nv12 => {
                let py = &planes[0];
                let luma = &py.data[y * py.stride + x0..][..w];
                let cy = y / 2;
                for (i, (o, &l)) in out.chunks_exact_mut(3).zip(luma).enumerate() {
                    let cx = (x0 + i) / 2;
                    let (u, v) = if layout == PixelLayout::I420 {
                        (
                            planes[1].data[cy * planes[1].stride + cx],
                            planes[2].data[cy * planes[2].stride + cx],
                        )
                    } else {
                        let uv = &planes[1].data[cy * planes[1].stride + cx * 2..];
                        (uv[0], uv[1])
                    };
                    o.copy_from_slice(&yuv.bgr(l, u, v));
                }
            }
        }
    }
    BgrImage {
        width: rect.width,
        height: rect.height,
        data,
    }
}

/// Cells per row and column of the change signature.
const SIG_CELLS_X: usize = 48;
const SIG_CELLS_Y: usize = 27;

/// A coarse luma thumbnail of a region, to tell cheaply whether OCR would see anything new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    cells: Vec<u8>,
    cols: usize,
}

impl Signature {
    /// Builds the signature of `rect` of a frame from a sparse sample of its luma:
    /// every second pixel of every second row, averaged per cell.
    pub fn from_planes(layout: PixelLayout, planes: &[Plane<'_>], rect: Rect) -> Signature {
        let cols = SIG_CELLS_X.min(rect.width as usize).max(1);
        let rows = SIG_CELLS_Y.min(rect.height as usize).max(1);
        let mut sums = vec![0u32; cols * rows];
        let mut counts = vec![0u32; cols * rows];
        let (w, h) = (rect.width as usize, rect.height as usize);
        let p = &planes[0];
        for yy in (0..h).step_by(2) {
            let y = rect.y as usize + yy;
            let cell_row = yy * rows / h * cols;
            let line = &p.data[y * p.stride..];
            for xx in (0..w).step_by(2) {
                let x = rect.x as usize + xx;
                let luma = match layout {
                    PixelLayout::Packed { bpp, r, g, b } => {
                        let s = &line[x * bpp..];
                        (u32::from(s[r]) * 77 + u32::from(s[g]) * 150 + u32::from(s[b]) * 29) >> 8
                    }
                    _ => u32::from(line[x]),
                };
                let c = cell_row + xx * cols / w;
                sums[c] += luma;
                counts[c] += 1;
            }
        }
        let cells = sums
            .iter()
            .zip(&counts)
            .map(|(&s, &n)| s.checked_div(n).unwrap_or(0) as u8)
            .collect();
        Signature { cells, cols }
    }

    /// Whether `other` differs enough to be worth OCR: any cell whose mean luma moved by
    /// more than `threshold` levels. A changed digit moves whole cells by far more than
    /// sensor noise or compression moves them.
    pub fn differs(&self, other: &Signature, threshold: u8) -> bool {
        self.cols != other.cols
            || self.cells.len() != other.cells.len()
            || self
                .cells
                .iter()
                .zip(&other.cells)
                .any(|(&a, &b)| a.abs_diff(b) > threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yuv601() -> YuvCoefficients {
        YuvCoefficients::new(ColorMatrix::Bt601, false)
    }

    #[test]
    fn packed_layouts_reorder_channels() {
        // One pixel with R=10, G=20, B=30 in each layout's byte order.
        let packed = |bpp, r, g, b| PixelLayout::Packed { bpp, r, g, b };
        let cases: [(PixelLayout, &[u8]); 6] = [
            (packed(3, 0, 1, 2), &[10, 20, 30]),
            (packed(3, 2, 1, 0), &[30, 20, 10]),
            (packed(4, 0, 1, 2), &[10, 20, 30, 0]),
            (packed(4, 2, 1, 0), &[30, 20, 10, 255]),
            (packed(4, 1, 2, 3), &[255, 10, 20, 30]),
            (packed(4, 3, 2, 1), &[0, 30, 20, 10]),
        ];
        for (layout, px) in cases {
            let plane = Plane {
                data: px,
                stride: px.len(),
            };
            let img = convert(layout, &[plane], Rect::new(0, 0, 1, 1), &yuv601());
            assert_eq!(img.data, vec![30, 20, 10], "{layout:?}");
        }
    }

    #[test]
    fn converts_only_the_rectangle_with_stride() {
        // 4x3 BGRx frame with 4 bytes of row padding; pixel (x, y) has B = 10y + x.
        let stride = 4 * 4 + 4;
        let mut data = vec![0u8; stride * 3];
        for y in 0..3 {
            for x in 0..4 {
                data[y * stride + x * 4] = (10 * y + x) as u8;
            }
        }
        let layout = PixelLayout::Packed {
            bpp: 4,
            r: 2,
            g: 1,
            b: 0,
        };
        let img = convert(
            layout,
            &[Plane {
                data: &data,
                stride,
            }],
            Rect::new(1, 1, 2, 2),
            &yuv601(),
        );
        let blues: Vec<u8> = img.data.chunks(3).map(|p| p[0]).collect();
        assert_eq!(blues, vec![11, 12, 21, 22]);
    }

    #[test]
    fn yuv_black_white_and_chroma() {
        let c = yuv601();
        assert_eq!(c.bgr(16, 128, 128), [0, 0, 0]);
        assert_eq!(c.bgr(235, 128, 128), [255, 255, 255]);
        // Pure red in BT.601 limited range is about Y=81, U=90, V=240.
        let [b, g, r] = c.bgr(81, 90, 240);
        assert!(r > 245 && g < 10 && b < 10, "{b} {g} {r}");
    }

    #[test]
    fn i420_and_nv12_agree() {
        // 4x2 frame, one chroma sample per 2x2 block.
        let luma: Vec<u8> = (0..8).map(|i| 40 + 20 * i).collect();
        let (u, v) = ([100u8, 150], [200u8, 60]);
        let uv = [u[0], v[0], u[1], v[1]];
        let i420 = convert(
            PixelLayout::I420,
            &[
                Plane {
                    data: &luma,
                    stride: 4,
                },
                Plane {
                    data: &u,
                    stride: 2,
                },
                Plane {
                    data: &v,
                    stride: 2,
                },
            ],
            Rect::new(1, 0, 3, 2),
            &yuv601(),
        );
        let nv12 = convert(
            PixelLayout::Nv12,
            &[
                Plane {
                    data: &luma,
                    stride: 4,
                },
                Plane {
                    data: &uv,
                    stride: 4,
                },
            ],
            Rect::new(1, 0, 3, 2),
            &yuv601(),
        );
        assert_eq!(i420, nv12);
        assert_eq!(i420.pixel(0, 0), yuv601().bgr(60, 100, 200));
        // Row 1, column 2 of the frame: luma index 4 + 2.
        assert_eq!(i420.pixel(1, 1), yuv601().bgr(160, 150, 60));
    }

    #[test]
    fn gray_replicates() {
        let data = [7u8, 9];
        let img = convert(
            PixelLayout::Gray8,
            &[Plane {
                data: &data,
                stride: 2,
            }],
            Rect::new(0, 0, 2, 1),
            &yuv601(),
        );
        assert_eq!(img.data, vec![7, 7, 7, 9, 9, 9]);
    }

    #[test]
    fn signature_sees_small_changes_only() {
        let (w, h) = (320usize, 180usize);
        let mut frame = vec![255u8; w * h];
        let plane = |d: &[u8]| -> Signature {
            Signature::from_planes(
                PixelLayout::Gray8,
                &[Plane { data: d, stride: w }],
                Rect::new(0, 0, w as u32, h as u32),
            )
        };
        let a = plane(&frame);
        // Mild noise everywhere must not count as a change.
        for (i, p) in frame.iter_mut().enumerate() {
            *p = 255 - (i % 3) as u8;
        }
        assert!(!a.differs(&plane(&frame), 8));
        // A dark 8x10 blob (a digit stroke) must.
        for y in 50..60 {
            for x in 100..108 {
                frame[y * w + x] = 0;
            }
        }
        assert!(a.differs(&plane(&frame), 8));
    }

    #[test]
    fn rect_bounds() {
        assert!(Rect::new(0, 0, 10, 10).fits_in(10, 10));
        assert!(!Rect::new(1, 0, 10, 10).fits_in(10, 10));
        assert!(!Rect::new(0, 0, 0, 10).fits_in(10, 10));
        assert!(!Rect::new(u32::MAX, 0, 2, 1).fits_in(10, 10));
    }
}

//! Pixel effects on the luma plane of an I420 frame: the slip turned on the table, a hand
//! over the slip, and motion blur.
//!
//! The scene is black text on a uniform grey table, so its chroma is neutral everywhere;
//! transforming luma alone is therefore exact and keeps the effects cheap.

/// Luma below this is ink (the table is about 205 in I420 luma).
const INK: u8 = 128;

/// A rectangle in pixels, `x1`/`y1` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

/// The bounding box of the ink inside `window` (clamped to the plane), or `None` when the
/// window holds no ink.
pub fn ink_bbox(luma: &[u8], width: usize, height: usize, window: Rect) -> Option<Rect> {
    let (wx1, wy1) = (window.x1.min(width), window.y1.min(height));
    let mut b: Option<Rect> = None;
    for y in window.y0..wy1 {
        let row = &luma[y * width + window.x0..y * width + wx1.max(window.x0)];
        for (x, _) in (window.x0..).zip(row).filter(|(_, v)| **v < INK) {
            let r = b.get_or_insert(Rect {
                x0: x,
                y0: y,
                x1: x + 1,
                y1: y + 1,
            });
            r.x0 = r.x0.min(x);
            r.y0 = r.y0.min(y);
            r.x1 = r.x1.max(x + 1);
            r.y1 = r.y1.max(y + 1);
        }
    }
    b
}

/// Turns the content of `bbox` by `degrees` (counter-clockwise on screen) about its
/// centre, as a slip lying askew on the table. Pixels the turned slip no longer covers get
/// the table's grey (`background`); pixels outside both the old and the new slip are
/// untouched, so nearby item labels survive.
pub fn rotate_region(
    luma: &mut [u8],
    width: usize,
    height: usize,
    bbox: Rect,
    degrees: f64,
    background: u8,
) {
    if degrees == 0.0 || bbox.x1 <= bbox.x0 || bbox.y1 <= bbox.y0 {
        return;
    }
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = (
        (bbox.x0 + bbox.x1) as f64 / 2.0,
        (bbox.y0 + bbox.y1) as f64 / 2.0,
    );
    let (hw, hh) = (
        (bbox.x1 - bbox.x0) as f64 / 2.0,
        (bbox.y1 - bbox.y0) as f64 / 2.0,
    );
    // The turned rectangle's extent, plus one pixel for the interpolation.
    let ex = hw * c.abs() + hh * s.abs() + 1.0;
    let ey = hw * s.abs() + hh * c.abs() + 1.0;
    let clamp = |v: f64, hi: usize| (v.max(0.0) as usize).min(hi);
    let out = Rect {
        x0: clamp((cx - ex).min(bbox.x0 as f64).floor(), width),
        y0: clamp((cy - ey).min(bbox.y0 as f64).floor(), height),
        x1: clamp((cx + ex).max(bbox.x1 as f64).ceil(), width),
        y1: clamp((cy + ey).max(bbox.y1 as f64).ceil(), height),
    };
    // Source pixels of the slip, with a border of table grey for the interpolation.
    let (bw, bh) = (bbox.x1 - bbox.x0, bbox.y1 - bbox.y0);
    let src = |x: isize, y: isize| -> f64 {
        if x < 0 || y < 0 || x >= bw as isize || y >= bh as isize {
            background as f64
        } else {
            let (x, y) = (bbox.x0 + x as usize, bbox.y0 + y as usize);
            if x >= width || y >= height {
                background as f64
            } else {
                luma[y * width + x] as f64
            }
        }
    };
    let mut turned = Vec::with_capacity((out.x1 - out.x0) * (out.y1 - out.y0));
    for y in out.y0..out.y1 {
        for x in out.x0..out.x1 {
            // Inverse rotation: where in the upright slip this pixel comes from.
            let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
            let sx = c * dx - s * dy + hw - 0.5;
            let sy = s * dx + c * dy + hh - 0.5;
            let inside = sx > -1.0 && sy > -1.0 && sx < bw as f64 && sy < bh as f64;
            let in_old = x >= bbox.x0 && x < bbox.x1 && y >= bbox.y0 && y < bbox.y1;
            let v = if inside {
                let (fx, fy) = (sx.floor(), sy.floor());
                let (ax, ay) = (sx - fx, sy - fy);
                let (ix, iy) = (fx as isize, fy as isize);
                let top = src(ix, iy) * (1.0 - ax) + src(ix + 1, iy) * ax;
                let bottom = src(ix, iy + 1) * (1.0 - ax) + src(ix + 1, iy + 1) * ax;
                Some((top * (1.0 - ay) + bottom * ay).round().clamp(0.0, 255.0) as u8)
            } else if in_old {
                Some(background)
            } else {
                None
            };
            turned.push(v);
        }
    }
    let mut i = 0;
    for y in out.y0..out.y1 {
        for x in out.x0..out.x1 {
            if let Some(v) = turned[i] {
                luma[y * width + x] = v;
            }
            i += 1;
        }
    }
}

/// Luma of the hand: well above [`INK`], so that nothing under it reads as ink, and darker
/// than the table, so that it shows.
pub const SKIN: u8 = 170;

/// Whether `(x, y)` lies in the rectangle `[x0, x1) x [y0, y1)` with corners rounded by `r`.
fn in_round_rect(x: f64, y: f64, (x0, y0, x1, y1): (f64, f64, f64, f64), r: f64) -> bool {
    if x < x0 || x >= x1 || y < y0 || y >= y1 {
        return false;
    }
    let r = r.min((x1 - x0) / 2.0).min((y1 - y0) / 2.0).max(0.0);
    let cx = x.clamp(x0 + r, x1 - r);
    let cy = y.clamp(y0 + r, y1 - r);
    (x - cx).powi(2) + (y - cy).powi(2) <= r * r
}

/// Paints an opaque hand over `cover` (the slip's ink), as a packer's hand reaching in from
/// the left over the slip: an arm from the left edge of the frame, a palm that covers
/// `cover` with a margin, and four fingers to its right, slightly apart. It
/// stays within the rows of `cover` plus the margin, so that item labels below the slip are
/// left alone.
pub fn draw_hand(luma: &mut [u8], width: usize, height: usize, cover: Rect) {
    if cover.x1 <= cover.x0 || cover.y1 <= cover.y0 || width == 0 || height == 0 {
        return;
    }
    let margin = 10.0;
    let (x0, y0) = (cover.x0 as f64 - margin, cover.y0 as f64 - margin);
    let (x1, y1) = (cover.x1 as f64 + margin, cover.y1 as f64 + margin);
    let palm_h = y1 - y0;
    // A circle of radius `margin` at the palm's corners still covers the corners of `cover`.
    let palm = (x0, y0, x1, y1);
    let arm_h = palm_h * 0.6;
    let arm = (
        0.0,
        y0 + (palm_h - arm_h) / 2.0,
        x0 + margin * 2.0,
        y0 + (palm_h + arm_h) / 2.0,
    );
    let finger_len = palm_h.max(24.0);
    let finger_h = palm_h / 4.0;
    let fingers: Vec<(f64, f64, f64, f64)> = (0..4)
        .map(|i| {
            let fy = y0 + i as f64 * finger_h;
            // Middle fingers are the longest.
            let len = finger_len * [0.75, 1.0, 0.95, 0.7][i];
            (x1 - margin * 2.0, fy + 1.0, x1 + len, fy + finger_h - 1.0)
        })
        .collect();
    let bx1 = (fingers.iter().map(|f| f.2).fold(x1, f64::max).ceil() as usize).min(width);
    let by0 = (y0.floor().max(0.0) as usize).min(height);
    let by1 = (y1.ceil().max(0.0) as usize).min(height);
    for y in by0..by1 {
        for x in 0..bx1 {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let in_palm = in_round_rect(px, py, palm, margin);
            let finger = fingers
                .iter()
                .any(|f| in_round_rect(px, py, *f, finger_h / 2.0 - 1.0));
            let in_arm = in_round_rect(px, py, arm, arm_h / 4.0);
            if in_palm || in_arm || finger {
                luma[y * width + x] = SKIN;
            }
        }
    }
}

/// Horizontal motion blur: every pixel becomes the mean of the `length` pixels centred on
/// it (a box filter along the row, as a camera panning during the exposure).
pub fn motion_blur(luma: &mut [u8], width: usize, height: usize, length: usize) {
    if length < 2 || width == 0 {
        return;
    }
    let half = length / 2;
    let mut row = vec![0u8; width];
    for y in 0..height {
        let line = &mut luma[y * width..(y + 1) * width];
        row.copy_from_slice(line);
        // Running sum over the window, edges repeated.
        let at = |i: isize| row[i.clamp(0, width as isize - 1) as usize] as u32;
        let mut sum: u32 = (-(half as isize)..(length - half) as isize).map(at).sum();
        for (x, px) in line.iter_mut().enumerate() {
            *px = ((sum + length as u32 / 2) / length as u32) as u8;
            let x = x as isize;
            sum += at(x + (length - half) as isize);
            sum -= at(x - half as isize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 200;
    const H: usize = 120;
    const GREY: u8 = 205;

    fn plane_with_bar() -> Vec<u8> {
        let mut p = vec![GREY; W * H];
        for y in 50..60 {
            for x in 40..160 {
                p[y * W + x] = 0;
            }
        }
        p
    }

    fn all() -> Rect {
        Rect {
            x0: 0,
            y0: 0,
            x1: W,
            y1: H,
        }
    }

    #[test]
    fn ink_bbox_finds_the_bar() {
        let p = plane_with_bar();
        let b = ink_bbox(&p, W, H, all()).unwrap();
        assert_eq!(
            b,
            Rect {
                x0: 40,
                y0: 50,
                x1: 160,
                y1: 60
            }
        );
        assert_eq!(ink_bbox(&vec![GREY; W * H], W, H, all()), None);
    }

    #[test]
    fn rotation_turns_the_bar_and_keeps_its_ink() {
        let mut p = plane_with_bar();
        // A label elsewhere must survive.
        p[5 * W + 5] = 0;
        let before = p.iter().filter(|v| **v < INK).count();
        let bbox = ink_bbox(&p, W, H, Rect { y0: 20, ..all() }).unwrap();
        rotate_region(&mut p, W, H, bbox, 10.0, GREY);
        let turned = ink_bbox(&p, W, H, Rect { y0: 20, ..all() }).unwrap();
        // 120x10 px at 10 degrees: 120 sin + 10 cos = 31 px tall, about as wide.
        let height = turned.y1 - turned.y0;
        assert!((28..=34).contains(&height), "height {height}");
        let width = turned.x1 - turned.x0;
        assert!((116..=122).contains(&width), "width {width}");
        let after = p.iter().filter(|v| **v < INK).count();
        let ratio = after as f64 / before as f64;
        assert!((0.9..1.1).contains(&ratio), "ink ratio {ratio}");
        assert_eq!(p[5 * W + 5], 0, "pixels outside the slip are untouched");
        // Counter-clockwise on screen: the right end rises (smaller y).
        let right_col: Vec<usize> = (0..H).filter(|y| p[y * W + 150] < INK).collect();
        let left_col: Vec<usize> = (0..H).filter(|y| p[y * W + 50] < INK).collect();
        assert!(right_col[0] < left_col[0], "{right_col:?} vs {left_col:?}");
    }

    #[test]
    fn zero_rotation_changes_nothing() {
        let mut p = plane_with_bar();
        let orig = p.clone();
        let bbox = ink_bbox(&p, W, H, all()).unwrap();
        rotate_region(&mut p, W, H, bbox, 0.0, GREY);
        assert_eq!(p, orig);
    }

    #[test]
    fn the_hand_hides_the_slip_and_spares_the_rest() {
        let mut p = plane_with_bar();
        // An item label below the slip.
        for x in 20..40 {
            p[100 * W + x] = 0;
        }
        let bar = ink_bbox(&p, W, H, Rect { y1: 70, ..all() }).unwrap();
        draw_hand(&mut p, W, H, bar);
        assert_eq!(ink_bbox(&p, W, H, Rect { y1: 70, ..all() }), None);
        for y in bar.y0..bar.y1 {
            for x in bar.x0..bar.x1 {
                assert_eq!(p[y * W + x], SKIN, "({x}, {y})");
            }
        }
        // The arm reaches the left edge; the rows below the margin are untouched.
        assert_eq!(p[55 * W], SKIN);
        assert!((70..H).all(|y| (0..W).all(|x| p[y * W + x] == GREY || y == 100)));
        assert_eq!(p[100 * W + 25], 0, "the label survives");
        // Near the edges of the frame it clips instead of panicking.
        let mut q = vec![GREY; W * H];
        draw_hand(
            &mut q,
            W,
            H,
            Rect {
                x0: 150,
                y0: 0,
                x1: W,
                y1: 8,
            },
        );
        assert_eq!(q[4 * W + 199], SKIN);
    }

    #[test]
    fn motion_blur_spreads_a_line_over_its_length() {
        let mut p = vec![GREY; W * H];
        for y in 0..H {
            p[y * W + 100] = 0;
        }
        motion_blur(&mut p, W, H, 9);
        let row = &p[10 * W..11 * W];
        let touched: Vec<usize> = (0..W).filter(|x| row[*x] != GREY).collect();
        assert_eq!(touched, (96..=104).collect::<Vec<_>>());
        // The ink is spread, not lost: 205 - 205/9 everywhere in the window.
        assert!(
            row[96..=104].iter().all(|v| (181..=183).contains(v)),
            "{row:?}"
        );
        let mut flat = vec![GREY; W * H];
        motion_blur(&mut flat, W, H, 9);
        assert!(flat.iter().all(|v| *v == GREY));
    }
}

//! Text-box geometry: connected components of the detector's probability map, minimum-area
//! rectangles, the "unclip" expansion and bilinear sampling of (rotated) boxes.

use super::BgrImage;

/// A parallelogram (in practice a rotated rectangle): `origin` is the top-left corner,
/// `ex` runs along the text line and `ey` across it. Sampling along these axes straightens
/// slightly rotated text before recognition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quad {
    pub origin: [f32; 2],
    pub ex: [f32; 2],
    pub ey: [f32; 2],
}

impl Quad {
    pub fn axis_aligned(x: f32, y: f32, w: f32, h: f32) -> Quad {
        Quad {
            origin: [x, y],
            ex: [w, 0.0],
            ey: [0.0, h],
        }
    }

    pub fn width(&self) -> f32 {
        self.ex[0].hypot(self.ex[1])
    }

    pub fn height(&self) -> f32 {
        self.ey[0].hypot(self.ey[1])
    }

    /// Corners clockwise from the top-left.
    pub fn corners(&self) -> [[f32; 2]; 4] {
        let [ox, oy] = self.origin;
        let [ax, ay] = self.ex;
        let [bx, by] = self.ey;
        [
            [ox, oy],
            [ox + ax, oy + ay],
            [ox + ax + bx, oy + ay + by],
            [ox + bx, oy + by],
        ]
    }

    /// Scales both coordinates (maps from detector resolution back to the image).
    pub fn scaled(&self, sx: f32, sy: f32) -> Quad {
        Quad {
            origin: [self.origin[0] * sx, self.origin[1] * sy],
            ex: [self.ex[0] * sx, self.ex[1] * sy],
            ey: [self.ey[0] * sx, self.ey[1] * sy],
        }
    }

    /// Integer bounding box `(x, y, width, height)` clipped to a `w` x `h` image.
    pub fn bounds(&self, w: u32, h: u32) -> (u32, u32, u32, u32) {
        let c = self.corners();
        let fold =
            |i: usize, f: fn(f32, f32) -> f32, init: f32| c.iter().map(|p| p[i]).fold(init, f);
        let x0 = fold(0, f32::min, f32::MAX).floor().clamp(0.0, w as f32) as u32;
        let y0 = fold(1, f32::min, f32::MAX).floor().clamp(0.0, h as f32) as u32;
        let x1 = fold(0, f32::max, f32::MIN).ceil().clamp(0.0, w as f32) as u32;
        let y1 = fold(1, f32::max, f32::MIN).ceil().clamp(0.0, h as f32) as u32;
        (x0, y0, x1 - x0, y1 - y0)
    }
}

/// Samples `quad` of `img` into a `out_w` x `out_h` region of a planar float tensor,
/// normalised as the PP-OCR models expect: `(v / 255 - 0.5) / 0.5`, channels in B, G, R
/// order. `dst` holds three planes of `plane_len` floats with rows `row_len` floats apart.
pub fn sample_normalized(
    img: &BgrImage,
    quad: &Quad,
    out_w: usize,
    out_h: usize,
    dst: &mut [f32],
    row_len: usize,
    plane_len: usize,
) {
    if img.width == 0 || img.height == 0 || out_w == 0 || out_h == 0 {
        return;
    }
    let (iw, ih) = (img.width as usize, img.height as usize);
    let max_x = (iw - 1) as f32;
    let max_y = (ih - 1) as f32;
    let stepx = [quad.ex[0] / out_w as f32, quad.ex[1] / out_w as f32];
    let stepy = [quad.ey[0] / out_h as f32, quad.ey[1] / out_h as f32];
    let data = &img.data;
    for j in 0..out_h {
        let fj = j as f32 + 0.5;
        let row_x = quad.origin[0] + stepy[0] * fj - 0.5;
        let row_y = quad.origin[1] + stepy[1] * fj - 0.5;
        for i in 0..out_w {
            let fi = i as f32 + 0.5;
            let sx = (row_x + stepx[0] * fi).clamp(0.0, max_x);
            let sy = (row_y + stepx[1] * fi).clamp(0.0, max_y);
            let (x0, y0) = (sx as usize, sy as usize);
            let (x1, y1) = ((x0 + 1).min(iw - 1), (y0 + 1).min(ih - 1));
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            let p00 = (y0 * iw + x0) * 3;
            let p01 = (y0 * iw + x1) * 3;
            let p10 = (y1 * iw + x0) * 3;
            let p11 = (y1 * iw + x1) * 3;
            let o = j * row_len + i;
            for c in 0..3 {
                let top = f32::from(data[p00 + c]) * (1.0 - fx) + f32::from(data[p01 + c]) * fx;
                let bottom = f32::from(data[p10 + c]) * (1.0 - fx) + f32::from(data[p11 + c]) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                dst[c * plane_len + o] = v / 127.5 - 1.0;
            }
        }
    }
}

/// Post-processing parameters of the DB text detector.
#[derive(Debug, Clone, Copy)]
pub struct BoxParams {
    /// Probability above which a pixel is text.
    pub thresh: f32,
    /// Mean probability inside a box below which it is dropped.
    pub box_thresh: f32,
    /// How far a box grows: `area * ratio / perimeter` on every side.
    pub unclip_ratio: f32,
    pub max_candidates: usize,
}

impl Default for BoxParams {
    fn default() -> Self {
        BoxParams {
            thresh: 0.3,
            box_thresh: 0.5,
            unclip_ratio: 1.6,
            max_candidates: 1000,
        }
    }
}

/// Smallest short side (in map pixels) a component may have.
const MIN_SIZE: f32 = 3.0;

/// Finds text boxes in a `w` x `h` probability map. Boxes are in map coordinates, with
/// their mean probability, top-to-bottom then left-to-right.
pub fn boxes_from_prob(prob: &[f32], w: usize, h: usize, p: &BoxParams) -> Vec<(Quad, f32)> {
    let mask = dilate(prob, w, h, p.thresh);
    let mut visited = vec![false; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    let mut pixels: Vec<(u32, u32)> = Vec::new();
    let mut candidates = 0;
    for start in 0..w * h {
        if !mask[start] || visited[start] {
            continue;
        }
        candidates += 1;
        if candidates > p.max_candidates {
            break;
        }
        pixels.clear();
        visited[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            pixels.push((x as u32, y as u32));
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let n = ny as usize * w + nx as usize;
                    if mask[n] && !visited[n] {
                        visited[n] = true;
                        stack.push(n);
                    }
                }
            }
        }
        if let Some(b) = component_box(&pixels, prob, w, h, p) {
            out.push(b);
        }
    }
    sort_reading_order(&mut out);
    out
}

fn dilate(prob: &[f32], w: usize, h: usize, thresh: f32) -> Vec<bool> {
    let bin: Vec<bool> = prob.iter().map(|&v| v > thresh).collect();
    let mut out = bin.clone();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if bin[i] {
                continue;
            }
            let left = x > 0 && bin[i - 1];
            let up = y > 0 && bin[i - w];
            let diag = x > 0 && y > 0 && bin[i - w - 1];
            out[i] = left || up || diag;
        }
    }
    out
}

fn component_box(
    pixels: &[(u32, u32)],
    prob: &[f32],
    w: usize,
    h: usize,
    p: &BoxParams,
) -> Option<(Quad, f32)> {
    // The convex hull only depends on each row's extreme pixels.
    let ymin = pixels.iter().map(|p| p.1).min()?;
    let ymax = pixels.iter().map(|p| p.1).max()?;
    let mut rows = vec![(u32::MAX, 0u32); (ymax - ymin + 1) as usize];
    for &(x, y) in pixels {
        let r = &mut rows[(y - ymin) as usize];
        r.0 = r.0.min(x);
        r.1 = r.1.max(x);
    }
    let mut pts: Vec<[i64; 2]> = Vec::with_capacity(rows.len() * 2);
    for (k, &(a, b)) in rows.iter().enumerate() {
        if a == u32::MAX {
            continue;
        }
        let y = i64::from(ymin) + k as i64;
        pts.push([i64::from(a), y]);
        if b != a {
            pts.push([i64::from(b), y]);
        }
    }
    let hull = convex_hull(pts);
    let rect = min_area_rect(&hull);
    if rect.short_side() < MIN_SIZE {
        return None;
    }
    let score = rect.mean_inside(prob, w, h);
    if score < p.box_thresh {
        return None;
    }
    let (bw, bh) = (rect.e1 - rect.e0, rect.f1 - rect.f0);
    let d = bw * bh * p.unclip_ratio / (2.0 * (bw + bh)).max(f32::EPSILON);
    let grown = OrientedRect {
        e0: rect.e0 - d,
        e1: rect.e1 + d,
        f0: rect.f0 - d,
        f1: rect.f1 + d,
        ..rect
    };
    if grown.short_side() < MIN_SIZE + 2.0 {
        return None;
    }
    Some((grown.to_quad(), score))
}

/// A rectangle spanning `[e0, e1]` along the unit axis `u` and `[f0, f1]` along `n`.
#[derive(Debug, Clone, Copy)]
struct OrientedRect {
    u: [f32; 2],
    n: [f32; 2],
    e0: f32,
    e1: f32,
    f0: f32,
    f1: f32,
}

impl OrientedRect {
    fn short_side(&self) -> f32 {
        (self.e1 - self.e0).min(self.f1 - self.f0)
    }

    fn to_quad(self) -> Quad {
        let at = |e: f32, f: f32| [e * self.u[0] + f * self.n[0], e * self.u[1] + f * self.n[1]];
        let (we, hf) = (self.e1 - self.e0, self.f1 - self.f0);
        Quad {
            origin: at(self.e0, self.f0),
            ex: [we * self.u[0], we * self.u[1]],
            ey: [hf * self.n[0], hf * self.n[1]],
        }
    }

    /// Mean of `prob` over the map pixels whose centres lie in the rectangle.
    fn mean_inside(&self, prob: &[f32], w: usize, h: usize) -> f32 {
        let corners = self.to_quad().corners();
        let xs = corners.iter().map(|c| c[0]);
        let ys = corners.iter().map(|c| c[1]);
        let x0 = xs.clone().fold(f32::MAX, f32::min).floor().max(0.0) as usize;
        let x1 = (xs.fold(f32::MIN, f32::max).ceil().max(0.0) as usize).min(w - 1);
        let y0 = ys.clone().fold(f32::MAX, f32::min).floor().max(0.0) as usize;
        let y1 = (ys.fold(f32::MIN, f32::max).ceil().max(0.0) as usize).min(h - 1);
        let (mut sum, mut n) = (0.0f64, 0u32);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (px, py) = (x as f32, y as f32);
                let e = px * self.u[0] + py * self.u[1];
                let f = px * self.n[0] + py * self.n[1];
                if e >= self.e0 - 0.5
                    && e <= self.e1 + 0.5
                    && f >= self.f0 - 0.5
                    && f <= self.f1 + 0.5
                {
                    sum += f64::from(prob[y * w + x]);
                    n += 1;
                }
            }
        }
        if n == 0 {
            0.0
        } else {
            (sum / f64::from(n)) as f32
        }
    }
}

fn convex_hull(mut pts: Vec<[i64; 2]>) -> Vec<[i64; 2]> {
    pts.sort_unstable();
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let cross = |o: [i64; 2], a: [i64; 2], b: [i64; 2]| {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let mut hull: Vec<[i64; 2]> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &[i64; 2]>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// Rotating calipers: the minimum-area rectangle has a side collinear with a hull edge.
/// The returned axis `u` is the one nearer to horizontal, pointing right, and `n` points
/// down, so text lines tilted either way come out reading left to right.
fn min_area_rect(hull: &[[i64; 2]]) -> OrientedRect {
    let mut dirs: Vec<[f32; 2]> = vec![[1.0, 0.0]];
    for k in 0..hull.len() {
        let a = hull[k];
        let b = hull[(k + 1) % hull.len()];
        let (dx, dy) = ((b[0] - a[0]) as f32, (b[1] - a[1]) as f32);
        let len = dx.hypot(dy);
        if len > 0.0 {
            dirs.push([dx / len, dy / len]);
        }
    }
    let mut best: Option<(f32, OrientedRect)> = None;
    for d in dirs {
        // Canonical orientation: u near horizontal pointing right, n pointing down.
        let mut u = if d[0].abs() >= d[1].abs() {
            d
        } else {
            [d[1], -d[0]]
        };
        if u[0] < 0.0 {
            u = [-u[0], -u[1]];
        }
        let n = [-u[1], u[0]];
        let (mut e0, mut e1, mut f0, mut f1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for p in hull {
            let (px, py) = (p[0] as f32, p[1] as f32);
            let e = px * u[0] + py * u[1];
            let f = px * n[0] + py * n[1];
            e0 = e0.min(e);
            e1 = e1.max(e);
            f0 = f0.min(f);
            f1 = f1.max(f);
        }
        let area = (e1 - e0) * (f1 - f0);
        if best.as_ref().is_none_or(|(a, _)| area < *a - 1e-3) {
            best = Some((
                area,
                OrientedRect {
                    u,
                    n,
                    e0,
                    e1,
                    f0,
                    f1,
                },
            ));
        }
    }
    best.map(|(_, r)| r).unwrap_or(OrientedRect {
        u: [1.0, 0.0],
        n: [0.0, 1.0],
        e0: 0.0,
        e1: 0.0,
        f0: 0.0,
        f1: 0.0,
    })
}

/// Rows closer than this (in image pixels) count as the same line.
const SAME_LINE_DY: f32 = 10.0;

/// Top-to-bottom, then left-to-right within a line, as rapidocr orders its boxes.
pub fn sort_reading_order<T>(boxes: &mut [(Quad, T)]) {
    boxes.sort_by(|a, b| a.0.origin[1].total_cmp(&b.0.origin[1]));
    let mut line = 0usize;
    let mut keys = Vec::with_capacity(boxes.len());
    for k in 0..boxes.len() {
        if k > 0 && boxes[k].0.origin[1] - boxes[k - 1].0.origin[1] >= SAME_LINE_DY {
            line += 1;
        }
        keys.push((line, boxes[k].0.origin[0]));
    }
    let mut idx: Vec<usize> = (0..boxes.len()).collect();
    idx.sort_by(|&a, &b| {
        keys[a]
            .0
            .cmp(&keys[b].0)
            .then(keys[a].1.total_cmp(&keys[b].1))
    });
    // Apply the permutation through a cycle walk so T needs no Clone.
    let mut pos: Vec<usize> = vec![0; idx.len()];
    for (new, &old) in idx.iter().enumerate() {
        pos[old] = new;
    }
    for i in 0..boxes.len() {
        while pos[i] != i {
            let j = pos[i];
            boxes.swap(i, j);
            pos.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_with_rects(w: usize, h: usize, rects: &[(usize, usize, usize, usize)]) -> Vec<f32> {
        let mut m = vec![0.0f32; w * h];
        for &(x, y, rw, rh) in rects {
            for yy in y..y + rh {
                for xx in x..x + rw {
                    m[yy * w + xx] = 0.9;
                }
            }
        }
        m
    }

    #[test]
    fn finds_and_orders_axis_aligned_boxes() {
        // Two words on one line (right one listed first in memory), one line below.
        let m = map_with_rects(
            200,
            100,
            &[(120, 10, 40, 12), (20, 12, 60, 12), (30, 60, 100, 14)],
        );
        let boxes = boxes_from_prob(&m, 200, 100, &BoxParams::default());
        assert_eq!(boxes.len(), 3);
        let xs: Vec<f32> = boxes.iter().map(|b| b.0.origin[0]).collect();
        assert!(xs[0] < xs[1], "left word first: {xs:?}");
        assert!(boxes[2].0.origin[1] > 40.0);
        let (q, score) = boxes[1];
        // The 2x2 dilation adds a zero-probability rim on the right and bottom.
        assert!(score > 0.7 && score < 0.9, "{score}");
        // Unclip grows every side by area*1.6/perimeter of the (centre-to-centre) box of
        // the dilated 41x13 component.
        let d = 40.0 * 12.0 * 1.6 / (2.0 * (40.0 + 12.0));
        assert!((q.width() - (40.0 + 2.0 * d)).abs() < 0.6, "{}", q.width());
        assert!(
            (q.height() - (12.0 + 2.0 * d)).abs() < 0.6,
            "{}",
            q.height()
        );
        assert!(q.ex[1].abs() < 1e-3 && q.ex[0] > 0.0 && q.ey[1] > 0.0);
    }

    #[test]
    fn drops_weak_and_tiny_components() {
        let mut m = map_with_rects(100, 50, &[(10, 10, 2, 2)]);
        // A large but weak blob: above thresh, below box_thresh.
        for y in 20..40 {
            for x in 20..80 {
                m[y * 100 + x] = 0.35;
            }
        }
        assert!(boxes_from_prob(&m, 100, 50, &BoxParams::default()).is_empty());
    }

    #[test]
    fn rotated_line_keeps_text_direction() {
        let (w, h) = (300usize, 200usize);
        let mut m = vec![0.0f32; w * h];
        let angle = 10f32.to_radians();
        let (c, s) = (angle.cos(), angle.sin());
        for t in 0..200 {
            for k in 0..16 {
                let x = 50.0 + t as f32 * c - k as f32 * s;
                let y = 60.0 + t as f32 * s + k as f32 * c;
                m[y.round() as usize * w + x.round() as usize] = 0.9;
            }
        }
        let boxes = boxes_from_prob(&m, w, h, &BoxParams::default());
        assert_eq!(boxes.len(), 1);
        let q = boxes[0].0;
        let got = q.ex[1].atan2(q.ex[0]).to_degrees();
        assert!((got - 10.0).abs() < 2.0, "angle {got}");
        assert!(q.width() > 3.0 * q.height());
    }

    #[test]
    fn sampling_normalises_and_scales() {
        let mut img = BgrImage::filled(4, 2, [255, 0, 0]);
        // Right half black.
        for y in 0..2 {
            for x in 2..4 {
                let i = (y * 4 + x) * 3;
                img.data[i..i + 3].copy_from_slice(&[0, 0, 0]);
            }
        }
        let mut dst = vec![9.0f32; 3 * 2];
        sample_normalized(
            &img,
            &Quad::axis_aligned(0.0, 0.0, 4.0, 2.0),
            2,
            1,
            &mut dst,
            2,
            2,
        );
        // Blue plane: left sample is pure blue (1.0), right black (-1.0).
        assert_eq!(&dst[0..2], &[1.0, -1.0]);
        assert_eq!(&dst[2..4], &[-1.0, -1.0]);
    }
}

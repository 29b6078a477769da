//! Mapped GStreamer video frames as the OCR engine's input: the only place where
//! `oa_ocr` meets GStreamer.

use gst_video::prelude::*;
use oa_ocr::{
    BgrImage, ColorMatrix, OcrError, PixelLayout, Plane, Rect, Signature, YuvCoefficients,
};

/// Every raw format the converters accept, for caps.
pub const SUPPORTED_FORMATS: [gst_video::VideoFormat; 13] = {
    use gst_video::VideoFormat as F;
    [
        F::Rgb,
        F::Bgr,
        F::Rgbx,
        F::Bgrx,
        F::Xrgb,
        F::Xbgr,
        F::Rgba,
        F::Bgra,
        F::Argb,
        F::Abgr,
        F::I420,
        F::Nv12,
        F::Gray8,
    ]
};

/// How `format` lays out its pixels; `None` for a format not in [`SUPPORTED_FORMATS`].
pub fn pixel_layout(format: gst_video::VideoFormat) -> Option<PixelLayout> {
    use gst_video::VideoFormat as F;
    let packed = |bpp, r, g, b| Some(PixelLayout::Packed { bpp, r, g, b });
    match format {
        F::Rgb => packed(3, 0, 1, 2),
        F::Bgr => packed(3, 2, 1, 0),
        F::Rgbx | F::Rgba => packed(4, 0, 1, 2),
        F::Bgrx | F::Bgra => packed(4, 2, 1, 0),
        F::Xrgb | F::Argb => packed(4, 1, 2, 3),
        F::Xbgr | F::Abgr => packed(4, 3, 2, 1),
        F::Gray8 => Some(PixelLayout::Gray8),
        F::I420 => Some(PixelLayout::I420),
        F::Nv12 => Some(PixelLayout::Nv12),
        _ => None,
    }
}

/// The YUV decoding factors of a frame's colorimetry.
pub fn yuv_coefficients(colorimetry: &gst_video::VideoColorimetry) -> YuvCoefficients {
    use gst_video::VideoColorMatrix as M;
    let matrix = match colorimetry.matrix() {
        M::Bt709 => ColorMatrix::Bt709,
        M::Bt2020 => ColorMatrix::Bt2020,
        M::Smpte240m => ColorMatrix::Smpte240m,
        M::Fcc => ColorMatrix::Fcc,
        _ => ColorMatrix::Bt601,
    };
    let full_range = colorimetry.range() == gst_video::VideoColorRange::Range0_255;
    YuvCoefficients::new(matrix, full_range)
}

fn layout_of<T>(frame: &gst_video::VideoFrameRef<T>) -> Result<PixelLayout, OcrError> {
    pixel_layout(frame.format())
        .ok_or_else(|| OcrError::Input(format!("unsupported video format {:?}", frame.format())))
}

fn planes<'a, T>(frame: &'a gst_video::VideoFrameRef<T>) -> Result<Vec<Plane<'a>>, OcrError> {
    let strides = frame.plane_stride();
    (0..frame.n_planes())
        .map(|p| {
            let data = frame
                .plane_data(p)
                .map_err(|e| OcrError::Input(format!("cannot read plane {p}: {e}")))?;
            let stride = usize::try_from(strides[p as usize])
                .map_err(|_| OcrError::Input("negative stride".into()))?;
            Ok(Plane { data, stride })
        })
        .collect()
}

/// Converts `rect` (the whole frame when `None`) of a mapped raw video frame.
pub fn to_bgr<T>(
    frame: &gst_video::VideoFrameRef<T>,
    rect: Option<Rect>,
) -> Result<BgrImage, OcrError> {
    let layout = layout_of(frame)?;
    let yuv = yuv_coefficients(&frame.info().colorimetry());
    BgrImage::from_planes(
        layout,
        &planes(frame)?,
        (frame.width(), frame.height()),
        rect,
        &yuv,
    )
}

/// The change signature of `rect` of a mapped raw video frame.
pub fn signature<T>(
    frame: &gst_video::VideoFrameRef<T>,
    rect: Rect,
) -> Result<Signature, OcrError> {
    if !rect.fits_in(frame.width(), frame.height()) {
        return Err(OcrError::Input(format!(
            "region {rect:?} is outside the {}x{} frame",
            frame.width(),
            frame.height()
        )));
    }
    Ok(Signature::from_planes(
        layout_of(frame)?,
        &planes(frame)?,
        rect,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_format_has_a_layout() {
        for format in SUPPORTED_FORMATS {
            assert!(pixel_layout(format).is_some(), "{format:?}");
        }
        assert_eq!(pixel_layout(gst_video::VideoFormat::Yuy2), None);
    }

    #[test]
    fn packed_formats_name_their_channel_offsets() {
        use gst_video::VideoFormat as F;
        // One pixel with R=10, G=20, B=30 in each format's byte order.
        let cases: [(F, &[u8]); 6] = [
            (F::Rgb, &[10, 20, 30]),
            (F::Bgr, &[30, 20, 10]),
            (F::Rgbx, &[10, 20, 30, 0]),
            (F::Bgra, &[30, 20, 10, 255]),
            (F::Argb, &[255, 10, 20, 30]),
            (F::Xbgr, &[0, 30, 20, 10]),
        ];
        for (format, px) in cases {
            let Some(PixelLayout::Packed { bpp, r, g, b }) = pixel_layout(format) else {
                panic!("{format:?} is packed");
            };
            assert_eq!(bpp, px.len(), "{format:?}");
            assert_eq!([px[r], px[g], px[b]], [10, 20, 30], "{format:?}");
        }
    }

    #[test]
    fn frames_convert_through_their_planes() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgrx, 4, 2)
            .build()
            .unwrap();
        let mut buf = gst::Buffer::with_size(info.size()).unwrap();
        {
            let mut map = buf.get_mut().unwrap().map_writable().unwrap();
            for (i, px) in map.chunks_exact_mut(4).enumerate() {
                px.copy_from_slice(&[i as u8, 100, 200, 0]);
            }
        }
        let frame =
            gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), &info).unwrap();
        let img = to_bgr(&frame, Some(Rect::new(1, 1, 2, 1))).unwrap();
        assert_eq!(img.data, vec![5, 100, 200, 6, 100, 200]);
        let err = to_bgr(&frame, Some(Rect::new(3, 0, 2, 1))).unwrap_err();
        assert!(err.to_string().contains("outside the 4x2 frame"), "{err}");
        assert!(signature(&frame, Rect::new(0, 0, 4, 2)).is_ok());
        assert!(signature(&frame, Rect::new(0, 1, 4, 2)).is_err());
    }
}

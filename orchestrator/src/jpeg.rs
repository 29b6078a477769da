//! JPEG frames decoded to 8-bit planes (zune-jpeg): what selection, the detector and the
//! labels recogniser read. A module of its own so that neither imports the other.

/// A decoded 8-bit image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    /// `width * height * channels` bytes.
    pub data: Vec<u8>,
}

fn decode(
    jpeg: &[u8],
    colorspace: zune_jpeg::zune_core::colorspace::ColorSpace,
) -> Result<Decoded, String> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::options::DecoderOptions;
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
        return Err("not a JPEG (no SOI marker)".into());
    }
    let options = DecoderOptions::default().jpeg_set_out_colorspace(colorspace);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
    let data = dec.decode().map_err(|e| format!("{e:?}"))?;
    let info = dec.info().ok_or("no image header")?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    let channels = colorspace.num_components();
    if width == 0 || height == 0 || data.len() < width * height * channels {
        return Err(format!(
            "truncated image ({width}x{height}, {} bytes)",
            data.len()
        ));
    }
    Ok(Decoded {
        width,
        height,
        data,
    })
}

/// Decodes a JPEG to 8-bit luma.
pub fn decode_luma(jpeg: &[u8]) -> Result<Decoded, String> {
    match decode(jpeg, zune_jpeg::zune_core::colorspace::ColorSpace::Luma) {
        Ok(d) => Ok(d),
        Err(e) => {
            // RGB-coded JPEGs (jpegenc fed RGB) have no luma plane to hand out: compute it.
            let rgb =
                decode(jpeg, zune_jpeg::zune_core::colorspace::ColorSpace::RGB).map_err(|_| e)?;
            let data = rgb
                .data
                .chunks_exact(3)
                .map(|p| {
                    let (r, g, b) = (u32::from(p[0]), u32::from(p[1]), u32::from(p[2]));
                    ((77 * r + 150 * g + 29 * b) >> 8) as u8
                })
                .collect();
            Ok(Decoded { data, ..rgb })
        }
    }
}

/// Decodes a JPEG to packed 8-bit B, G, R (what the PP-OCR models expect).
pub fn decode_bgr(jpeg: &[u8]) -> Result<Decoded, String> {
    match decode(jpeg, zune_jpeg::zune_core::colorspace::ColorSpace::BGR) {
        Ok(d) => Ok(d),
        Err(e) => {
            // RGB-coded JPEGs decode only to RGB: swap the channels.
            if let Ok(mut rgb) = decode(jpeg, zune_jpeg::zune_core::colorspace::ColorSpace::RGB) {
                rgb.data.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
                return Ok(rgb);
            }
            // Greyscale JPEGs: decode the luma plane and replicate it.
            let luma = decode_luma(jpeg).map_err(|_| e)?;
            let data = luma.data.iter().flat_map(|&v| [v, v, v]).collect();
            Ok(Decoded { data, ..luma })
        }
    }
}

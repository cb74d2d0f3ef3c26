//! QR codes as PNG, for `GET /:session/qr`.

use base64::Engine as _;
use image::{ImageFormat, Luma};
use qrcode::{EcLevel, QrCode};

#[derive(Debug, thiserror::Error)]
#[error("failed to generate QR image: {0}")]
pub struct QrError(String);

/// A 256x256-or-larger PNG of `text`, medium error correction.
pub fn png(text: &str) -> Result<Vec<u8>, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| QrError(e.to_string()))?;
    let img = code.render::<Luma<u8>>().min_dimensions(256, 256).build();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .map_err(|e| QrError(e.to_string()))?;
    Ok(out.into_inner())
}

/// `data:image/png;base64,...`.
pub fn data_url(text: &str) -> Result<String, QrError> {
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png(text)?)
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_a_png() {
        let p = super::png("2@abc,def,ghi,jkl,1").unwrap();
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            super::data_url("x")
                .unwrap()
                .starts_with("data:image/png;base64,")
        );
    }
}

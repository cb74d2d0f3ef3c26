//! Request bodies that carry a file: the contract's JSON, or 0.2.8's `multipart/form-data`
//! with the file in a `file` field and the other fields as text; and the image a picture
//! endpoint (profile, group photo) was given, loaded the way message media are.

use std::collections::HashMap;

use axum::{
    extract::{FromRequest, Multipart, Request, multipart::MultipartError},
    http::{StatusCode, header},
};
use serde::de::DeserializeOwned;

use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    http::extract::{BodyLimit, JsonBody},
    media::{Fetcher, MediaKind, input},
};

/// A media send body: JSON (the contract's), or `multipart/form-data` with the file in a
/// `file` field and `phone`, `caption`, `mimeType`, `ptt`, `filename` as text fields (0.2.8).
pub(crate) enum MediaBody<T> {
    Json(T),
    Form(Form),
}

pub(crate) struct Form {
    fields: HashMap<String, String>,
    file: Option<FormFile>,
}

pub(crate) struct FormFile {
    pub(crate) bytes: Vec<u8>,
    pub(crate) content_type: Option<String>,
}

impl Form {
    /// The `file` field, taken out of the form.
    pub(crate) fn take_file(&mut self) -> Option<FormFile> {
        self.file.take()
    }

    /// The first of `names` that is present and not blank.
    pub(crate) fn text(&self, names: &[&str]) -> Option<&str> {
        names
            .iter()
            .filter_map(|n| self.fields.get(*n))
            .map(|v| v.trim())
            .find(|v| !v.is_empty())
    }
}

fn is_multipart(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

fn form_error(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit: 0 }
    } else {
        ApiError::bad_request(format!("invalid multipart body: {}", e.body_text()))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for MediaBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_multipart(&req) {
            return JsonBody::<T>::from_request(req, state)
                .await
                .map(|JsonBody(t)| MediaBody::Json(t));
        }
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        let mut multipart = Multipart::from_request(req, state).await.map_err(|e| {
            ApiError::bad_request(format!("invalid multipart body: {}", e.body_text()))
        })?;
        let mut form = Form {
            fields: HashMap::new(),
            file: None,
        };
        let too_large = |e: ApiError| match e {
            ApiError::PayloadTooLarge { .. } => ApiError::PayloadTooLarge {
                limit: limit.unwrap_or_default(),
            },
            other => other,
        };
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| too_large(form_error(e)))?
        {
            let name = field.name().unwrap_or_default().to_string();
            if name == "file" {
                let content_type = field.content_type().map(str::to_string);
                let bytes = field.bytes().await.map_err(|e| too_large(form_error(e)))?;
                form.file = Some(FormFile {
                    bytes: bytes.to_vec(),
                    content_type,
                });
            } else {
                let text = field.text().await.map_err(|e| too_large(form_error(e)))?;
                form.fields.insert(name, text);
            }
        }
        Ok(MediaBody::Form(form))
    }
}

/// 400 for a form without its `file` field.
pub(crate) fn no_file() -> ApiError {
    ApiError::bad_request("failed to get file from form: no `file` field")
}

/// A picture as the request gave it: the JSON `image` value (base64, data URL, http(s) URL)
/// or a form's `file`.
pub(crate) enum Picture {
    Value(String),
    File(FormFile),
}

impl Picture {
    /// The form's `file`, or 400.
    pub(crate) fn from_form(form: &mut Form) -> Result<Self, ApiError> {
        form.take_file().map(Picture::File).ok_or_else(no_file)
    }

    /// 400 `image is required` for a blank JSON value; checked before anything is fetched.
    pub(crate) fn check(&self) -> Result<(), ApiError> {
        match self {
            Picture::Value(v) if v.trim().is_empty() => {
                Err(ApiError::bad_request("image is required"))
            }
            _ => Ok(()),
        }
    }

    /// The image's bytes: decoded, or downloaded with the SSRF guard, within `MEDIA_MAX_BYTES`.
    pub(crate) async fn load(self, s: &AppState) -> ApiResult<Vec<u8>> {
        let max = s.config.media_max_bytes;
        let file = match self {
            Picture::Value(v) => {
                let fetcher = Fetcher {
                    max_bytes: max,
                    allow_private: s.config.media_allow_private_urls,
                };
                input::load(MediaKind::Image, &v, None, &fetcher).await?
            }
            Picture::File(f) => input::from_bytes(
                MediaKind::Image,
                f.bytes,
                None,
                f.content_type.as_deref(),
                max,
            )?,
        };
        Ok(file.bytes)
    }
}

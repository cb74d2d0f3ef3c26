//! Media files in an S3-compatible object store (MinIO, AWS S3, ...), configured with OnWapp's
//! `MINIO_*` variables.
//!
//! Requests are signed by `rusty-s3` (SigV4 in the query string, sans-IO) and sent with our own
//! small HTTP client (`media::web`), so no second TLS stack or global crypto provider comes in.
//! Objects are addressed path-style (`<endpoint>/<bucket>/<key>`), as MinIO and OnWapp do.
//!
//! `storageUrl` must open in a browser or in Chatwoot without our API key:
//! - with `MINIO_PUBLIC_URL` it is OnWapp's public URL, `<public>/<bucket>/<key>` (the operator
//!   makes that readable: a public bucket policy, or a proxy);
//! - otherwise it is a presigned GET, made when the record is read, valid `MINIO_PRESIGN_EXPIRY`
//!   (7 days at most, SigV4's limit). The bucket itself stays private.

use std::{borrow::Cow, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle, actions::ListObjectsV2};
use url::Url;

use super::{
    blobs::{BlobError, BlobStore},
    web::{self, Exchange, WebResponse},
};

/// The `MINIO_*` settings.
#[derive(Clone, PartialEq)]
pub struct S3Settings {
    /// `MINIO_ENDPOINT`: `host:port` as OnWapp takes it, or a full `http(s)://` URL.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    /// `MINIO_USE_SSL`: `https` for an endpoint given as `host:port`.
    pub use_ssl: bool,
    /// `MINIO_PUBLIC_URL`: the base of public object URLs.
    pub public_url: Option<Url>,
    /// `MINIO_REGION` (MinIO ignores it; AWS needs the bucket's).
    pub region: String,
    /// `MINIO_PRESIGN_EXPIRY` (seconds): how long a presigned `storageUrl` stays valid.
    pub presign_expiry: Duration,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key is never printed.
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("bucket", &self.bucket)
            .field("use_ssl", &self.use_ssl)
            .field("public_url", &self.public_url.as_ref().map(Url::as_str))
            .field("region", &self.region)
            .field("presign_expiry", &self.presign_expiry)
            .finish()
    }
}

/// SigV4's longest presigned validity.
pub const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

impl S3Settings {
    /// OnWapp's defaults for everything but the endpoint.
    pub fn with_endpoint(endpoint: impl Into<String>) -> Self {
        S3Settings {
            endpoint: endpoint.into(),
            access_key: "onwapp".into(),
            secret_key: "postgres".into(),
            bucket: "onwapp-media".into(),
            use_ssl: false,
            public_url: None,
            region: "us-east-1".into(),
            presign_expiry: MAX_PRESIGN,
        }
    }

    /// The endpoint as a URL: `MINIO_ENDPOINT` itself when it has a scheme, else
    /// `http(s)://<endpoint>` by `MINIO_USE_SSL`.
    pub fn endpoint_url(&self) -> Result<Url, String> {
        let raw = if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else {
            let scheme = if self.use_ssl { "https" } else { "http" };
            format!("{scheme}://{}", self.endpoint)
        };
        let url = Url::parse(&raw).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("must be host:port or an http(s):// URL".into());
        }
        Ok(url)
    }
}

/// How long one request may take (a 100 MiB file on a slow link included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a signed request stays valid: it is sent at once.
const SIGNED_FOR: Duration = Duration::from_secs(600);
/// Bucket checks at start: OnWapp's 5 tries, 2, 4, 6 and 8 s apart.
const ENSURE_TRIES: u32 = 5;

/// An S3 bucket as a [`BlobStore`].
pub struct S3Blobs {
    bucket: Bucket,
    credentials: Credentials,
    public_base: Option<Url>,
    presign_expiry: Duration,
    /// The largest object read back: nothing stored here is larger (`MEDIA_MAX_BYTES`), and
    /// an object put there by someone else is not read past it.
    max_object: u64,
}

impl S3Blobs {
    pub fn new(s: &S3Settings) -> Result<Self, BlobError> {
        let endpoint = s
            .endpoint_url()
            .map_err(|e| s3_error("configure", &s.endpoint, e))?;
        let bucket = Bucket::new(endpoint, UrlStyle::Path, s.bucket.clone(), s.region.clone())
            .map_err(|e| s3_error("configure", &s.bucket, e.to_string()))?;
        Ok(S3Blobs {
            bucket,
            credentials: Credentials::new(s.access_key.clone(), s.secret_key.clone()),
            public_base: s.public_url.clone(),
            presign_expiry: s.presign_expiry.min(MAX_PRESIGN),
            max_object: super::DEFAULT_MAX_BYTES,
        })
    }

    /// Reads objects up to `max` bytes (the media limit in effect).
    pub fn max_object(mut self, max: u64) -> Self {
        self.max_object = max;
        self
    }

    /// Makes sure the bucket exists (creates it if not), trying up to 5 times 2, 4, 6 and 8 s
    /// apart, as OnWapp does.
    pub async fn ensure_bucket(&self) -> Result<(), BlobError> {
        let mut last = None;
        for attempt in 1..=ENSURE_TRIES {
            match self.ensure_once().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(bucket = self.bucket.name(), attempt, error = %e, "object store not ready");
                    last = Some(e);
                }
            }
            if attempt < ENSURE_TRIES {
                tokio::time::sleep(Duration::from_secs(2 * u64::from(attempt))).await;
            }
        }
        Err(last.unwrap_or_else(|| s3_error("HeadBucket", self.bucket.name(), "no attempt")))
    }

    async fn ensure_once(&self) -> Result<(), BlobError> {
        let head = self.bucket.head_bucket(Some(&self.credentials));
        let r = self
            // A HEAD answer declares the length of a body it does not send.
            .call(
                Method::HEAD,
                head.sign(SIGNED_FOR),
                &[],
                Bytes::new(),
                u64::MAX,
            )
            .await?;
        match r.status {
            200 => Ok(()),
            404 => {
                let create = self.bucket.create_bucket(&self.credentials);
                let r = self
                    .call(
                        Method::PUT,
                        create.sign(SIGNED_FOR),
                        &[],
                        Bytes::new(),
                        1 << 16,
                    )
                    .await?;
                match r.status {
                    200 => {
                        tracing::info!(bucket = self.bucket.name(), "object store bucket created");
                        Ok(())
                    }
                    // Another node created it between our HEAD and PUT.
                    409 if error_code(&r.body) == Some("BucketAlreadyOwnedByYou") => Ok(()),
                    _ => Err(answer_error("CreateBucket", self.bucket.name(), &r)),
                }
            }
            _ => Err(answer_error("HeadBucket", self.bucket.name(), &r)),
        }
    }

    /// One signed request, to each address the endpoint resolves to until one connects.
    async fn call(
        &self,
        method: Method,
        url: Url,
        headers: &[(String, String)],
        body: Bytes,
        max_body: u64,
    ) -> Result<WebResponse, BlobError> {
        let what = method.to_string();
        let exchange = Exchange {
            method,
            url: &url,
            headers,
            body,
            max_body,
        };
        let attempt = async {
            let addrs = web::resolve(&url).await?;
            let mut last = None;
            for addr in addrs {
                match web::exchange(addr, &exchange).await {
                    Err(e @ web::WebError::Connect(..)) => last = Some(e),
                    other => return other,
                }
            }
            Err(last.unwrap_or_else(|| web::WebError::Http("no address".into())))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(s3_error(&what, url.path(), e.to_string())),
            Err(_) => Err(s3_error(&what, url.path(), "timed out")),
        }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let mut put = self.bucket.put_object(Some(&self.credentials), key);
        let mime = super::kind::mime_of_name(key);
        put.headers_mut().insert("content-type", mime);
        let headers = [("content-type".to_string(), mime.to_string())];
        let r = self
            .call(
                Method::PUT,
                put.sign(SIGNED_FOR),
                &headers,
                Bytes::copy_from_slice(bytes),
                1 << 16,
            )
            .await?;
        match r.status {
            200 => Ok(()),
            _ => Err(answer_error("PutObject", key, &r)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let get = self.bucket.get_object(Some(&self.credentials), key);
        let r = self
            .call(
                Method::GET,
                get.sign(SIGNED_FOR),
                &[],
                Bytes::new(),
                self.max_object,
            )
            .await?;
        match r.status {
            200 => Ok(Some(r.body)),
            404 => Ok(None),
            _ => Err(answer_error("GetObject", key, &r)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let delete = self.bucket.delete_object(Some(&self.credentials), key);
        let r = self
            .call(
                Method::DELETE,
                delete.sign(SIGNED_FOR),
                &[],
                Bytes::new(),
                1 << 16,
            )
            .await?;
        match r.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(answer_error("DeleteObject", key, &r)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, BlobError> {
        let mut deleted = std::collections::HashSet::new();
        loop {
            // Listed again from the start each time: what was deleted is gone from the list.
            let mut list: ListObjectsV2<'_> = self.bucket.list_objects_v2(Some(&self.credentials));
            list.with_prefix(Cow::Owned(prefix.to_string()));
            list.with_max_keys(1000);
            let r = self
                .call(
                    Method::GET,
                    list.sign(SIGNED_FOR),
                    &[],
                    Bytes::new(),
                    16 << 20,
                )
                .await?;
            if r.status != 200 {
                return Err(answer_error("ListObjectsV2", prefix, &r));
            }
            // The keys only: servers differ in the other fields they list (s3s-fs sends no
            // ETag, which rusty-s3's parser requires).
            let keys = listed_keys(&r.body).map_err(|e| s3_error("ListObjectsV2", prefix, e))?;
            if keys.is_empty() {
                return Ok(deleted.len() as u64);
            }
            let mut progress = false;
            for key in &keys {
                // `encoding-type=url`: keys come percent-encoded.
                let key = percent_decode(key);
                self.delete(&key).await?;
                progress |= deleted.insert(key);
            }
            // A store that lists what it said it deleted would keep this loop going.
            if !progress {
                return Err(s3_error(
                    "DeleteObject",
                    prefix,
                    "objects are still listed after their deletion",
                ));
            }
        }
    }

    fn public_url(&self, key: &str) -> Option<String> {
        match &self.public_base {
            Some(base) => Some(format!(
                "{}/{}/{key}",
                base.as_str().trim_end_matches('/'),
                self.bucket.name()
            )),
            None => Some(
                self.bucket
                    .get_object(Some(&self.credentials), key)
                    .sign(self.presign_expiry)
                    .to_string(),
            ),
        }
    }

    fn describe(&self) -> String {
        format!(
            "S3 bucket {} at {}",
            self.bucket.name(),
            self.bucket.base_url()
        )
    }
}

/// The `<Key>` of each `<Contents>` of a ListObjectsV2 answer.
fn listed_keys(body: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the listing is not UTF-8".to_string())?;
    if !text.contains("<ListBucketResult") {
        return Err("not a ListBucketResult".into());
    }
    let mut keys = Vec::new();
    for contents in text.split("<Contents>").skip(1) {
        let Some(start) = contents.find("<Key>").map(|i| i + "<Key>".len()) else {
            continue;
        };
        let Some(len) = contents[start..].find("</Key>") else {
            continue;
        };
        let key = &contents[start..start + len];
        keys.push(
            key.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
    }
    Ok(keys)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("k={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn s3_error(op: &str, target: &str, detail: impl std::fmt::Display) -> BlobError {
    BlobError::Remote(format!("object store {op} {target}: {detail}"))
}

/// The error of an S3 answer: its status and, when the body is S3's XML error, its `Code`.
fn answer_error(op: &str, target: &str, r: &WebResponse) -> BlobError {
    match error_code(&r.body) {
        Some(code) => s3_error(op, target, format!("HTTP {} {code}", r.status)),
        None => s3_error(op, target, format!("HTTP {}", r.status)),
    }
}

/// `<Code>...</Code>` of an S3 error document.
fn error_code(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    Some(&text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_as_onwapp_takes_them() {
        let mut s = S3Settings::with_endpoint("minio:9000");
        assert_eq!(s.endpoint_url().unwrap().as_str(), "http://minio:9000/");
        s.use_ssl = true;
        assert_eq!(s.endpoint_url().unwrap().as_str(), "https://minio:9000/");
        s.endpoint = "http://127.0.0.1:9000".into();
        assert_eq!(s.endpoint_url().unwrap().as_str(), "http://127.0.0.1:9000/");
        s.endpoint = "ftp://x".into();
        assert!(s.endpoint_url().is_err());
    }

    #[test]
    fn public_and_presigned_urls() {
        let mut s = S3Settings::with_endpoint("minio:9000");
        s.public_url = Some(Url::parse("https://cdn.example.com/").unwrap());
        let blobs = S3Blobs::new(&s).unwrap();
        assert_eq!(
            blobs
                .public_url("sid/received/2026/01/02/ID_image.jpg")
                .unwrap(),
            "https://cdn.example.com/onwapp-media/sid/received/2026/01/02/ID_image.jpg"
        );
        s.public_url = None;
        let blobs = S3Blobs::new(&s).unwrap();
        let url = Url::parse(&blobs.public_url("sid/a_image.jpg").unwrap()).unwrap();
        assert_eq!(url.path(), "/onwapp-media/sid/a_image.jpg");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["X-Amz-Expires"], "604800");
        assert!(q["X-Amz-Credential"].starts_with("onwapp/"), "{q:?}");
        assert!(!url.as_str().contains("postgres"), "no secret in the URL");
    }

    #[test]
    fn error_codes_are_read() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code></Error>";
        assert_eq!(error_code(body), Some("SignatureDoesNotMatch"));
        assert_eq!(error_code(b"nope"), None);
        assert_eq!(percent_decode("a%2Fb%20c+d"), "a/b c+d");
        let listing = b"<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name>\
            <Contents><Key>s%2Fa_image.jpg</Key><Size>3</Size></Contents>\
            <Contents><Key>s/b&amp;c</Key></Contents></ListBucketResult>";
        assert_eq!(
            listed_keys(listing).unwrap(),
            vec!["s%2Fa_image.jpg".to_string(), "s/b&c".to_string()]
        );
        assert!(listed_keys(b"<Error><Code>AccessDenied</Code></Error>").is_err());
    }
}

//! Media files: what send requests carry (base64, data URLs, http(s) URLs fetched with an SSRF
//! guard), their MIME types, and where files are kept ([`blobs`]). The WhatsApp side (upload,
//! download, the media rows) is in `engine::media`; the rows themselves in `store::media`.

pub mod blobs;
pub mod fetch;
pub mod input;
pub mod kind;
pub mod s3;
pub mod sniff;
pub mod web;

pub use blobs::{BlobStore, FsBlobs};
pub use fetch::Fetcher;
pub use kind::MediaKind;
pub use s3::{S3Blobs, S3Settings};

/// Files larger than this are refused (sent) or not stored (received): 100 MiB, OnWapp's limit.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;

-- Media files of a cluster without an object store (no MINIO_ENDPOINT): kept in the shared
-- database, so any node serves them after a failover. One row per 1 MiB part of a file
-- (`store::blobs`); a key is `<session id>/<sent|received>/<YYYY>/<MM>/<DD>/<file name>`.
CREATE TABLE IF NOT EXISTS media_blobs (
    key  TEXT    NOT NULL,
    part INTEGER NOT NULL,
    data BYTEA   NOT NULL,
    PRIMARY KEY (key, part)
);

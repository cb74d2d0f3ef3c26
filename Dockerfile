# syntax=docker/dockerfile:1
# onwapp-rs: a release build in a Rust image, the stripped binary alone in a distroless image
# (no shell, no package manager), run as a non-root user. The binary is its own preStop client
# (`onwapp drain`), so nothing else is needed in the image.
#
#   docker build -t onwapp-rs .
#   docker run -p 3000:3000 -v onwapp-data:/data onwapp-rs

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin onwapp \
 && strip target/release/onwapp \
 && mkdir -p /out/data \
 && cp target/release/onwapp /out/onwapp

# glibc, CA certificates and a nonroot user (65532); no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/onwapp /usr/local/bin/onwapp
COPY --from=build --chown=65532:65532 /out/data /data
ENV PORT=3000 DATA_DIR=/data LOG_FORMAT=json
USER 65532:65532
EXPOSE 3000
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/onwapp"]
CMD ["serve"]

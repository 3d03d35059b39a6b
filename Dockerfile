# syntax=docker/dockerfile:1
# Dockerfile - the zoom-operator and zoom-sim images.
#
# Two stages: a Rust build on Debian 12 (bookworm), and a runtime that is distroless `cc`
# (glibc, libgcc, CA certificates, /etc/passwd with `nonroot` = uid 65532) and the binary.
# The binaries link glibc dynamically; TLS roots for https://zoom.us are compiled in
# (reqwest with webpki-roots), and the image's /etc/ssl/certs is there for anything else.
# The image writes no files, so it runs under the chart's securityContext
# (readOnlyRootFilesystem, runAsNonRoot, drop ALL).
#
#   docker build -t zoom-operator:0.1.0 .                         # the chart's default image
#   docker build --target zoom-sim -t zoom-sim:0.1.0 .            # the Zoom simulator
#
# Without Docker or a registry, hack/image.sh builds the same images from Debian packages and
# the cargo release build, as OCI tarballs.

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p zoom-operator -p zoom-sim --bin zoom-operator --bin zoom-sim \
    && install -D -m 0755 -t /out target/release/zoom-operator target/release/zoom-sim

# The Zoom simulator, for test clusters and demos (not for production).
FROM gcr.io/distroless/cc-debian12:nonroot AS zoom-sim
COPY --from=build /out/zoom-sim /usr/local/bin/zoom-sim
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/zoom-sim"]

# The operator: the last stage, so a plain `docker build` gives this image.
FROM gcr.io/distroless/cc-debian12:nonroot AS zoom-operator
COPY --from=build /out/zoom-operator /usr/local/bin/zoom-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/zoom-operator"]

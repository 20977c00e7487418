# A stand-in for the official rust:<version>-bookworm image, for machines where no
# registry is reachable: the local Debian base (debootstrap) with the C toolchain the
# gateway's build needs (cmake and a C compiler: pingora's zlib-ng, ring) and the
# host's Rust toolchain and crates.io cache, copied in by e2e/container/run.sh.
ARG BASE_IMAGE=gateway-test/debian:bookworm
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates cmake g++ gcc libc6-dev make pkg-config \
    && rm -rf /var/lib/apt/lists/*
# rust/: the toolchain's sysroot (bin, lib, libexec, etc); cargo/: registry cache and index.
COPY rust/ /usr/local/rust/
COPY cargo/ /usr/local/cargo/
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN rustc --version && cargo --version

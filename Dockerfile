# syntax=docker/dockerfile:1
# Parley's image: `parley` as entrypoint, run as an unprivileged user.
#
#   docker build -t parley .
#   docker run -p 8080:8080 -v parley-data:/var/lib/parley parley           # parley dev
#   docker run parley serve command-api                                    # one role
#
# Stages: `chef` plans the dependency build from the manifests alone, so the
# `build` stage's dependency layer stays cached until Cargo.toml or
# Cargo.lock change; `runtime` is Debian slim with the binary, OpenSSL's
# runtime library and the CA certificates.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# librdkafka is built from source by rdkafka-sys (make, a C compiler) and
# links the system's OpenSSL and zlib.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make g++ pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# The dependency layer: rebuilt only when the recipe (manifests) changes.
# Without the default `bench` feature: the image has no use for the load
# generator (`parley-bench`), so neither it nor its clients are compiled.
RUN cargo chef cook --release --locked --recipe-path recipe.json --no-default-features --bin parley
COPY . .
RUN cargo build --release --locked --no-default-features --bin parley \
    && cp target/release/parley /usr/local/bin/parley

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/parley --shell /usr/sbin/nologin parley \
    && install -d -o parley -g parley -m 0700 /var/lib/parley
COPY --from=build /usr/local/bin/parley /usr/local/bin/parley
USER 10001:10001
WORKDIR /var/lib/parley
# In a container Parley listens on every interface; the embedded backend
# keeps its data (and `dev`'s generated JWT secret) in the volume.
ENV PARLEY_LISTEN=0.0.0.0:8080 \
    PARLEY_DATA_DIR=/var/lib/parley \
    PARLEY_LOG_FORMAT=json
VOLUME ["/var/lib/parley"]
EXPOSE 8080
# The image has no HTTP client: bash asks /readyz itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PARLEY_LISTEN##*:} && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/parley"]
CMD ["dev"]

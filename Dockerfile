# syntax=docker/dockerfile:1
# tron-actors as a container: configured by environment variables only (TRON_ACTORS_<SECTION>__<KEY>,
# every key in config/default.toml), running as an unprivileged user.
#   docker build -t tron-actors .
#   docker run --rm tron-actors --help
#   docker run -d -e TRON_ACTORS_NODE__URL=... -e TRON_ACTORS_REDIS__URL=... -p 9464:9464 tron-actors

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: changing the sources does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY actors/Cargo.toml actors/Cargo.toml
COPY sim/Cargo.toml sim/Cargo.toml
RUN mkdir -p src actors/src sim/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs actors/src/lib.rs sim/src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src actors/src sim/src
COPY config config
COPY actors actors
COPY sim sim
COPY src src
# The copied files may be older than the placeholder build's outputs: make cargo see them as new.
RUN touch src/main.rs src/lib.rs actors/src/lib.rs sim/src/lib.rs \
    && cargo build --release --locked --bin tron-actors \
    && cp target/release/tron-actors /usr/local/bin/tron-actors

FROM debian:bookworm-slim
# ca-certificates: https to TronGrid and to a TLS Redis. Versions follow the base image's
# security updates rather than a pin that would go stale.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tron-actors \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tron-actors
COPY --from=build /usr/local/bin/tron-actors /usr/local/bin/tron-actors
LABEL org.opencontainers.image.title="tron-actors" \
      org.opencontainers.image.description="Follows the TRON chain and publishes every event to a Redis stream, exactly once" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="README.md (Deploy)"
# The operations server (/metrics, /healthz, /readyz) must be reachable from outside the
# container (Prometheus, the published port); the built-in default, 127.0.0.1:9464, would not be.
ENV TRON_ACTORS_METRICS__LISTEN=0.0.0.0:9464
EXPOSE 9464
USER 10001:10001
# `tron-actors health` asks http://127.0.0.1:9464/healthz: no curl in the image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 CMD ["tron-actors", "health"]
ENTRYPOINT ["tron-actors"]
CMD ["run"]

# imagegate's container image: a release build, then a small runtime image that runs it as a
# non-root user with its data (SQLite database, images) on a volume.
#   docker build -t imagegate .
#   docker run -p 8080:8080 -v imagegate-data:/data imagegate
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked --bin imagegate -p imagegate \
 && cp target/release/imagegate /usr/local/bin/imagegate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin imagegate \
 && mkdir -p /data && chown imagegate /data
COPY --from=build /usr/local/bin/imagegate /usr/local/bin/imagegate
USER 10001
WORKDIR /data
ENV IMAGEGATE_LISTEN=0.0.0.0:8080 \
    IMAGEGATE_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["imagegate", "health"]
ENTRYPOINT ["imagegate"]
CMD ["serve"]

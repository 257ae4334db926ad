# Multi-stage build: compile in the Rust image, run as a non-root user in a slim image with the
# flows, templates and a volume for the SQLite file.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY bot ./bot
COPY migrations ./migrations
RUN cargo build --release --locked --bin carebot

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /app carebot \
 && mkdir -p /data && chown carebot /data
WORKDIR /app
COPY --from=build /src/target/release/carebot /usr/local/bin/carebot
COPY flows ./flows
COPY templates ./templates
USER carebot
ENV DATABASE_URL=sqlite:///data/carebot.db \
    PORT=8080 \
    RUST_LOG=carebot=info,warn
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
CMD ["carebot", "serve"]

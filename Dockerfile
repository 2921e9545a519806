# syntax=docker/dockerfile:1
# The wasmhook container image. The build stage compiles the engine and the bundled adapters
# (wasm32-wasip2); the runtime stage holds only the binary, the adapters, the config example
# and CA certificates, and runs as a non-root user. See docs/deployment.md.
#
#   docker build -t wasmhook .
#   docker run -p 8080:8080 -v wasmhook-data:/var/lib/wasmhook -e WASMHOOK_API_TOKEN=… wasmhook

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip2
COPY . .
RUN cd plugins && cargo build --release --locked --target wasm32-wasip2 --workspace
RUN cargo build --release --locked -p wasmhook --bin wasmhook \
    && mkdir -p /out/plugins \
    && cp target/release/wasmhook /out/ \
    && cp plugins/target/wasm32-wasip2/release/*.wasm /out/plugins/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/wasmhook \
        --shell /usr/sbin/nologin wasmhook \
    && install -d -o wasmhook -g wasmhook -m 750 /var/lib/wasmhook
COPY --from=build /out/wasmhook /usr/bin/wasmhook
COPY --from=build /out/plugins/ /usr/lib/wasmhook/plugins/
COPY packaging/wasmhook.toml /etc/wasmhook/wasmhook.toml
USER 10001:10001
WORKDIR /var/lib/wasmhook
# Listen on every interface inside the container; logs as JSON lines for log collectors.
ENV WASMHOOK_LISTEN=0.0.0.0:8080 \
    WASMHOOK_LOG_FORMAT=json
EXPOSE 8080
VOLUME /var/lib/wasmhook
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["wasmhook", "health", "--server", "http://127.0.0.1:8080"]
ENTRYPOINT ["wasmhook"]
CMD ["serve", "--config", "/etc/wasmhook/wasmhook.toml"]

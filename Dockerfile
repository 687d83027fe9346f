# A static tailprobe in an empty image: `docker build -t tailprobe:0.1.0 .`
# musl links everything in, so the final stage needs no libc and no shell.
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY bench bench
RUN cargo build --release --locked --bin tailprobe \
    && strip target/release/tailprobe

FROM scratch
COPY --from=build /src/target/release/tailprobe /tailprobe
# The DaemonSets run as this user too (runAsUser 65532): no root, no shell.
USER 65532:65532
EXPOSE 9797 9798
ENTRYPOINT ["/tailprobe"]

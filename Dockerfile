# A static tailprobe in an empty image: `docker build -t tailprobe:0.1.0 .`
# musl links everything in, so the final stage needs no libc and no shell.
FROM rust:1.95-alpine AS build
# build.rs compiles passive mode's BPF program with clang against libbpf's
# headers and strips its DWARF with llvm-strip: without them the binary still
# builds but has no passive mode, which deploy/passive runs it with.
RUN apk add --no-cache musl-dev clang llvm libbpf-dev
WORKDIR /src
# What `cargo build --bin tailprobe` reads, and only that (tests/image/main.rs
# builds from these paths alone): the lab embeds tools/*/go.mod (the pinned
# control plane) and deploy/'s manifests; the [[bench]] files need not exist
# to build the binary.
COPY Cargo.toml Cargo.lock build.rs ./
COPY bpf bpf
COPY tools tools
COPY deploy deploy
COPY src src
# The evaluation set (kit/) is a dev-dependency: cargo reads its manifest
# to load the workspace, even for the binary alone.
COPY kit kit
# TAILPROBE_REQUIRE_BPF: an image without passive mode fails here, not on a node.
RUN TAILPROBE_REQUIRE_BPF=1 cargo build --release --locked --bin tailprobe \
    && strip target/release/tailprobe

FROM scratch
COPY --from=build /src/target/release/tailprobe /tailprobe
# The DaemonSets run as this user too (runAsUser 65532): no root, no shell.
USER 65532:65532
EXPOSE 9797 9798
ENTRYPOINT ["/tailprobe"]

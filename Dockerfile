# Build: docker build -t stuffgate .
# Run:   docker run --rm -p 8080:8080 -p 127.0.0.1:9901:9901 -v $PWD/gateway.toml:/etc/stuffgate/gateway.toml:ro \
#          -e STUFFGATE_HASH_KEY -e STUFFGATE_ADMIN_TOKEN stuffgate
# The gateway file's paths are relative to it; the shipped policies and data are under /usr/share/stuffgate
# (`policies = ["/usr/share/stuffgate/policies/default.toml"]`), and `stuffgate demo` finds them there. In a container
# the admin listener must listen on 0.0.0.0:9901 to be published (then keep it off public networks: -p 127.0.0.1:…).
FROM rust:1-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --locked --release && strip target/release/stuffgate

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin stuffgate
COPY --from=build /src/target/release/stuffgate /usr/local/bin/stuffgate
COPY policies /usr/share/stuffgate/policies
COPY geoip /usr/share/stuffgate/geoip
COPY examples/gateway.toml /usr/share/stuffgate/examples/gateway.toml
USER stuffgate
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/stuffgate"]
CMD ["run", "--config", "/etc/stuffgate/gateway.toml"]

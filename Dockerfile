# sentinel-proxy container image.
#
#   docker build -t sentinel-proxy .
#   docker run --rm -p 6380:6380 sentinel-proxy \
#       --master-name mymaster --sentinel 10.0.0.1:26379 --sentinel 10.0.0.2:26379
#
# Arguments after the image name replace the default ones below; without a
# configuration file, give --backend or --master-name/--sentinel flags.

FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libev-dev libhiredis-dev libyaml-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY lib lib
COPY proxy proxy
COPY sentinel sentinel
COPY conf conf
RUN make -j"$(nproc)" && build/sentinel-proxy --version

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libev4 libhiredis0.14 libyaml-0-2 libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin sentinel-proxy
COPY --from=build /src/build/sentinel-proxy /usr/local/bin/sentinel-proxy
COPY conf/sentinel-proxy.yaml /etc/sentinel-proxy/sentinel-proxy.yaml
USER sentinel-proxy
EXPOSE 6380
ENTRYPOINT ["/usr/local/bin/sentinel-proxy"]
CMD ["-c", "/etc/sentinel-proxy/sentinel-proxy.yaml", "--listen", "0.0.0.0:6380"]

# sentinel-proxy container image.
#
#   docker build -t sentinel-proxy .
#   docker run --rm -p 6380:6380 sentinel-proxy \
#       --master-name mymaster --sentinel 10.0.0.1:26379 --sentinel 10.0.0.2:26379
#
# The image listens on 0.0.0.0:6380 and serves /healthz, /readyz and /metrics
# on 9121 (conf/container.yaml). Arguments after the image name are added to
# that file's settings (a --listen replaces its listener); without a Sentinel
# or a backend the proxy exits, saying which flags to give. Mount a file of your
# own on /etc/sentinel-proxy/sentinel-proxy.yaml to configure everything; send
# SIGHUP (docker kill -s HUP) to reload it.
#
# BASE and RUNTIME_BASE name the Debian 12 images to build from; `make
# image-test` builds with local ones where no registry can be reached.

ARG BASE=debian:12
ARG RUNTIME_BASE=debian:12-slim

FROM ${BASE} AS build
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

FROM ${RUNTIME_BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libev4 libhiredis0.14 libyaml-0-2 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 sentinel-proxy \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin \
      sentinel-proxy
COPY --from=build /src/build/sentinel-proxy /usr/local/bin/sentinel-proxy
COPY conf/container.yaml /etc/sentinel-proxy/sentinel-proxy.yaml
# Fails the build if a runtime library is missing.
RUN /usr/local/bin/sentinel-proxy --version \
 && /usr/local/bin/sentinel-proxy -c /etc/sentinel-proxy/sentinel-proxy.yaml \
      --backend 127.0.0.1:6379 -t
USER 10001:10001
EXPOSE 6380 9121
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/sentinel-proxy", "--healthcheck", "127.0.0.1:9121/healthz"]
ENTRYPOINT ["/usr/local/bin/sentinel-proxy", "-c", "/etc/sentinel-proxy/sentinel-proxy.yaml"]
CMD []

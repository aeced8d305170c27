# syntax=docker/dockerfile:1
#
# authsidecar image: a static, trimmed Go binary on distroless (no shell, no package manager,
# runs as uid/gid 65532, distroless's "nonroot").
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t authsidecar .
#
# Size: distroless/static-debian12 is ~2 MB plus the binary (~16.5 MB stripped): ~18.5 MB (see
# docs/deploying.md for the measured figure).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Module downloads first, so source edits do not invalidate this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ENV CGO_ENABLED=0
# grpcnotrace: gRPC (the OTLP exporter's) without golang.org/x/net/trace, whose templates
# would keep the linker from dropping unused methods: 9 MB less.
RUN go build -tags grpcnotrace -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/authsidecar .
# Fail the build if the result is not a static executable that runs.
RUN /out/authsidecar version

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authsidecar /authsidecar
# Numeric, not "nonroot:nonroot": with runAsNonRoot the kubelet must see a number to verify
# the user is not root (it refuses a name: CreateContainerConfigError). 65532 is the id of
# distroless's nonroot user; the Kubernetes manifests and the Helm chart set the same
# runAsUser/runAsGroup (e2e/podsecurity_test.go checks they agree).
USER 65532:65532
# 8080: public listener (LISTEN_ADDR). 9091: admin listener (ADMIN_ADDR, /healthz /readyz
# /metrics /admin/*); it binds 127.0.0.1 unless ADMIN_ADDR says otherwise.
EXPOSE 8080 9091
# Exits 0 iff the admin listener's /readyz answers 200 (Postgres reachable). Runs inside the
# container, so the default loopback ADMIN_ADDR works.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/authsidecar", "healthcheck"]
ENTRYPOINT ["/authsidecar"]

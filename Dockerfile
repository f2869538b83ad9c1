# syntax=docker/dockerfile:1
#
# The fraud-detector image: the service and the payment generator (paygen), the ONNX Runtime
# library the model needs, and the shipped configuration and model. docs/deploy.md says how to
# build and run it.
#
#   docker build -t fraud-detector:dev --build-arg VERSION=$(git describe --always) .
#
# cmd/fraud-detector/compose_test.go holds this file to the rest of the repository: the Go
# version to go.mod, the ONNX Runtime path to scripts/onnxruntime.sh, EXPOSE to api.listen.

# ONNX Runtime: the project's own script fetches onnxruntime-node from the npm registry and
# checks the SHA-256 of libonnxruntime.so, so the image carries the same verified library as a
# developer's checkout.
FROM node:22-bookworm-slim AS onnxruntime
WORKDIR /src
COPY scripts/onnxruntime.sh scripts/onnxruntime.sh
RUN scripts/onnxruntime.sh

# Go: cgo is on because github.com/yalue/onnxruntime_go loads the library through dlopen.
FROM golang:1.26-bookworm AS build
ENV CGO_ENABLED=1 GOTOOLCHAIN=auto
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ \
      ./cmd/fraud-detector ./cmd/paygen

# Runtime: glibc and libstdc++ (which libonnxruntime.so links against), no shell, no root.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="fraud-detector" \
      org.opencontainers.image.description="Real-time payment fraud detection on Kafka and Redis" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/fraud-detector /out/paygen /usr/local/bin/
COPY --from=onnxruntime /src/.cache/onnxruntime/libonnxruntime.so.1.24.1 /usr/local/lib/onnxruntime/libonnxruntime.so.1.24.1
COPY configs/config.yaml configs/rules.yaml configs/model.onnx /app/configs/
WORKDIR /app
USER nonroot:nonroot
ENV FRAUD_MODEL_ONNXRUNTIME_LIBRARY=/usr/local/lib/onnxruntime/libonnxruntime.so.1.24.1
EXPOSE 8080
# GETs /healthz on api.listen's port on 127.0.0.1 (distroless has no curl) and exits 0 or 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/fraud-detector", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/fraud-detector"]

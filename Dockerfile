# gcnserve container image: one static-ish binary (ONNX Runtime embedded) on a
# base with glibc and libstdc++, running as a non-root user, fine with a
# read-only root file system. No HEALTHCHECK: probes are the orchestrator's
# (gRPC health on 9999, /healthz and /readyz on 8000; deploy/kubernetes).
#
#   docker build -t gcnserve .            (or: make image)
#   docker run --rm --read-only -p 9999:9999 -p 8000:8000 gcnserve
#   docker run --rm --read-only -v $PWD/repo:/models:ro -p 9999:9999 gcnserve --model-repository=/models
#
# Without a registry: scripts/build_image.sh makes BASE and BUILDER locally
# (mmdebstrap) and mounts the host's Go toolchain into the build stage.
ARG BASE=gcr.io/distroless/cc-debian12:nonroot
ARG BUILDER=golang:1.26-bookworm

FROM ${BUILDER} AS build
ENV PATH=/usr/local/go/bin:$PATH GOFLAGS=-buildvcs=false
WORKDIR /src
# Dependencies first: this layer survives source edits.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
# make build fetches and verifies ONNX Runtime and embeds it: the image needs
# no other file. A copy in the user cache (scripts/build_image.sh mounts the
# host's) saves the download; fetch_ort.sh checks its sha256 either way.
RUN lib=/root/.cache/gcnserve/ort/1.29.0/libonnxruntime.so; \
    if [ -f "$lib" ]; then mkdir -p .ort/1.29.0 && cp "$lib" .ort/1.29.0/; fi; \
    make build VERSION="${VERSION}" && bin/gcnserve --version

FROM ${BASE}
COPY --from=build /src/bin/gcnserve /usr/local/bin/gcnserve
# The bundled models as a model repository (<name>/<version>/model.onnx).
# Mount another repository over /models, or build FROM this image and COPY
# yours in (deploy/README.md).
COPY --from=build /src/model/karate.onnx /models/karate/1/model.onnx
COPY --from=build /src/model/cora.onnx /models/cora/1/model.onnx
# Numeric: the base need not have a passwd entry (distroless's "nonroot").
USER 65532:65532
# Every flag has a GCNSERVE_ environment twin; arguments override them.
ENV GCNSERVE_ADDR=:9999 \
    GCNSERVE_HTTP_ADDR=:8000
EXPOSE 9999 8000
ENTRYPOINT ["/usr/local/bin/gcnserve"]
# Arguments replace this (docker run IMAGE ARGS..., a pod's args:).
CMD ["--model-repository=/models", "--default-model=karate"]

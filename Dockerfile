# syntax=docker/dockerfile:1
#
# Builds the pgtenant binary and ships it alone in a distroless image that
# runs as a non-root user.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t pgtenant .
#   docker run --rm -p 6432:6432 -p 9432:9432 \
#     -v "$PWD/pgtenant.yaml:/etc/pgtenant/pgtenant.yaml:ro" \
#     -v "$PWD/secrets:/run/secrets:ro" \
#     -v "$PWD/tls:/etc/pgtenant/tls:ro" \
#     pgtenant
#
# Inside a container, listen on 0.0.0.0 (see deploy/examples/pgtenant.yaml);
# that makes TLS mandatory, so mount a certificate as well.

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so that they stay cached while only the code changes.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# cgo: the statement guard embeds PostgreSQL's parser (pg_query_go), so the
# binary links glibc and the runtime image is distroless/base, not static.
# Not musl: its small thread stacks are too small for the parser.
RUN CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/pgtenant ./cmd/pgtenant

FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /out/pgtenant /pgtenant
USER nonroot:nonroot
# 6432: PostgreSQL clients (listen). 9432: /metrics, /healthz, /readyz (admin.listen).
EXPOSE 6432 9432
ENTRYPOINT ["/pgtenant"]
CMD ["serve", "--config", "/etc/pgtenant/pgtenant.yaml"]

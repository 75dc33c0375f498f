# syntax=docker/dockerfile:1
# chatd: a static binary on a distroless base, run as a non-root user.
#   docker build -t chatd .
#   docker run -p 8000:8000 -e REDIS_URL=redis://redis:6379/0 chatd

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/chatd ./cmd/chatd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/chatd /usr/local/bin/chatd
USER nonroot:nonroot
# Inside a container chatd listens on every interface; the port is
# published or reached through the load balancer.
ENV CHAT_ADDR=0.0.0.0:8000 CHAT_LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 CMD ["/usr/local/bin/chatd", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/chatd"]

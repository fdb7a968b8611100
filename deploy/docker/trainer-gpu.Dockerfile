# syntax=docker/dockerfile:1.7
# The trainer image for NVIDIA GPU nodes: `iacnas trainer <phase>` with native TensorFlow
# 2.21 built for CUDA 12 (@tensorflow/tfjs-node-gpu 4.22.0 built by
# scripts/native-backend.sh --gpu from the PyPI wheel tensorflow and the nvidia-*-cu12
# wheels, which land in the package's deps/nvidia; see docs/native-backend.md). No CUDA
# base image: the CUDA libraries are inside the package, the driver comes from the host
# (NVIDIA container toolkit; the pods request nvidia.com/gpu). Hopper (sm_90) included.
# The backend is chosen automatically: tensorflow-gpu where a GPU is visible, else the same
# package on the CPU (named on the trainer's first line).
# Build from the repository root:
#   docker build -f deploy/docker/trainer-gpu.Dockerfile -t iac-operator/trainer-gpu:0.1.0 .

ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
# Builder stage only: python3 + pip download the wheels, g++/make/patch compile the addon
# (binutils' readelf reads libtensorflow's RUNPATH). None of it reaches the final image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip g++ make patch binutils ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# BUILD_CA_FILE: a CA bundle the build mounts for npm and pip behind a TLS-inspecting proxy.
# IACNAS_CACHE: a cache the build mounts (scripts/native-backend.sh reuses the wheels and
# the built package there); empty: the stage's own ~/.cache. Build arguments of this
# stage only: they are not in the final image.
ARG BUILD_CA_FILE=
ARG IACNAS_CACHE=
WORKDIR /app
COPY package.json package-lock.json ./
RUN if [ -n "$BUILD_CA_FILE" ]; then export NODE_EXTRA_CA_CERTS="$BUILD_CA_FILE" PIP_CERT="$BUILD_CA_FILE"; fi \
 && npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
COPY scripts/with-node scripts/native-backend.sh ./scripts/
COPY scripts/native ./scripts/native
# Builds (or takes from the cache) tfjs-node-gpu on TensorFlow 2.21 / CUDA 12, installs it
# into /app/node_modules with its libraries copied in (its npm dependencies without the dev
# tools: npm_config_omit=dev), then loads it and runs a convolution (on the CPU where the
# build has no GPU): the build fails when it cannot load.
RUN if [ -n "$BUILD_CA_FILE" ]; then export NODE_EXTRA_CA_CERTS="$BUILD_CA_FILE" PIP_CERT="$BUILD_CA_FILE"; fi \
 && export npm_config_omit=dev \
 && scripts/native-backend.sh --gpu --prefix /app --copy \
 # Test files some packages publish (zod, pino): an image holds no tests.
 && find node_modules -type f \( -name '*.test.ts' -o -name '*.spec.ts' \) -delete \
 && npm cache clean --force
COPY bin ./bin
COPY contract/src ./contract/src
COPY trainer/src ./trainer/src
# The trainer's own choice must be native TensorFlow: tensorflow-gpu with a GPU, else
# tensorflow (this package on the CPU), never a silent fall back to wasm.
RUN node -e "import('/app/trainer/src/backend/index.ts').then(async (b) => { const i = await b.initBackend(); if (i.choice !== 'tensorflow' && i.choice !== 'tensorflow-gpu') throw new Error('the trainer chose ' + i.line); })"

FROM ${NODE_IMAGE}
LABEL org.opencontainers.image.title="iac-trainer-gpu" \
      org.opencontainers.image.description="IAC-LTH trainer (TensorFlow.js on native TensorFlow 2.21, CUDA 12.x / cuDNN 9)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY contract/src ./contract/src
COPY trainer/src ./trainer/src
RUN chmod 0755 /app/bin/iacnas.ts && ln -s /app/bin/iacnas.ts /usr/local/bin/iacnas
USER 1000:1000
ENTRYPOINT ["iacnas"]
CMD ["--help"]

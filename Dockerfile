# syntax=docker/dockerfile:1
# The `reverst` command (data plane by default, `control-plane`, `http`) on Node.js 20, as the
# manifests in deploy/ run it. Build: docker build -t reverst:0.1.0 .

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# No install scripts: `prepare` would build before the sources are copied, and the QUIC
# binding arrives prebuilt as an optional dependency. (`npm ci` refuses this lock file, see .ci/run.)
RUN npm install --no-audit --no-fund --ignore-scripts
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund --ignore-scripts

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/bin ./bin
# The image's own `node` user, by number so that runAsNonRoot can check it.
USER 1000:1000
# Tunnels (QUIC), public HTTP, the hop, management; 8080 for `reverst control-plane`.
EXPOSE 7171/udp 8181/tcp 9000/tcp 9090/tcp 8080/tcp
ENTRYPOINT ["node", "bin/reverst.js"]

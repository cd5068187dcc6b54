# The recoserve package with torch (CPU): the REST gateway and event display, the `recoserve`
# command (export, reconstruct, bench) and the embedded CPU Triton for the "cpu" profile.
FROM node:22-slim AS js
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim
WORKDIR /opt/recoserve
COPY pyproject.toml README.md ./
COPY recoserve ./recoserve
COPY checkpoints ./checkpoints
COPY --from=js /web/node_modules/three/build/three.module.min.js \
     /web/node_modules/swagger-ui-dist/swagger-ui-bundle.js \
     /web/node_modules/swagger-ui-dist/swagger-ui.css \
     /web/node_modules/redoc/bundles/redoc.standalone.js ./recoserve/server/static/vendor/
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -e ".[all]"

EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8080/healthz')"
ENTRYPOINT ["recoserve"]
CMD ["gateway", "--host", "0.0.0.0", "--port", "8080", "--triton", "triton:8001"]

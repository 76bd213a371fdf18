# syntax=docker/dockerfile:1
# cloudmailin-exporter: a small, non-root image with only the runtime dependencies.

# Pinned to a patch release of the Python the tests run on. The build stage
# is the full image, for its C compiler (the modules with a .pxd are compiled
# with Cython); the runtime stage is the slim image of the same release and Debian.
FROM python:3.11.11-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY exporter ./exporter
# The README's install path: the pinned constraints, the package, no test
# extras; then refuse an image whose compiled modules failed to build.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt . \
    && /opt/venv/bin/python -c "import sys; from exporter import native; sys.exit(0 if native.available() else 'compiled modules missing')"

FROM python:3.11.11-slim-bookworm
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin exporter
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The chart runs the same numeric user (podSecurityContext.runAsUser).
USER 10001:10001
EXPOSE 9878
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('CLOUDMAILIN_EXPORTER_PORT', '9878'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]
# uvicorn runs inside; the access log is off unless CLOUDMAILIN_EXPORTER_ACCESS_LOG=true.
ENTRYPOINT ["cloudmailin-exporter"]
CMD ["serve"]

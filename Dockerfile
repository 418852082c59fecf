# One image for every process kind: the command picks it (serve, api, worker, sweeper, migrate,
# keys, tasks, ...). See docs/deploy.md.
#
#   docker build -t imagegate .
#   docker run --rm -p 8000:8000 -v imagegate-data:/var/lib/imagegate imagegate serve
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The packages alone (the service and its client), from wheels built here; the sources do not
# stay in the image.
COPY clients/python /tmp/imagegate-client
COPY pyproject.toml README.md LICENSE /tmp/imagegate/
COPY src /tmp/imagegate/src
RUN pip install /tmp/imagegate-client /tmp/imagegate && rm -rf /tmp/imagegate /tmp/imagegate-client

# A user of its own, and a data directory it owns (the SQLite database and result files of
# `serve`; a fleet on PostgreSQL and S3 keeps nothing there).
RUN groupadd --system --gid 10001 imagegate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/imagegate --create-home \
        --shell /usr/sbin/nologin imagegate
USER 10001:10001
WORKDIR /var/lib/imagegate
ENV IMAGEGATE_DATA_DIR=/var/lib/imagegate \
    IMAGEGATE_HOST=0.0.0.0 \
    IMAGEGATE_PORT=8000
EXPOSE 8000

ENTRYPOINT ["imagegate"]
CMD ["serve"]

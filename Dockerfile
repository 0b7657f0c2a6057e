# One image for the three services; the command picks one:
#   docker run IMAGE run ingest | run detector | run alerting
# Build stage: the project and its dependencies into a virtualenv, with the
# compilers some wheels may need. Final stage: the virtualenv alone, non-root.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/opswatch
ENV PATH=/opt/opswatch/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir '.[postgres]'

FROM python:3.11-slim-bookworm
RUN groupadd --gid 10001 opswatch \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin opswatch
COPY --from=build /opt/opswatch /opt/opswatch
ENV PATH=/opt/opswatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPSWATCH_INGEST_HOST=0.0.0.0 \
    OPSWATCH_ALERTING_HOST=0.0.0.0 \
    OPSWATCH_DETECTOR_HOST=0.0.0.0 \
    OPSWATCH_DETECTOR_DATA_DIR=/var/lib/opswatch/detector
RUN mkdir -p /var/lib/opswatch && chown 10001:10001 /var/lib/opswatch
WORKDIR /var/lib/opswatch
USER 10001:10001
EXPOSE 8080 8081 9102
ENTRYPOINT ["opswatch"]
CMD ["run", "alerting"]

# The ANTQ Ledger image: every service and the `antq` command, from this repository (compose.yaml builds it).
# Each service runs as its own module: `python -m services.gateway`, `python -m projections`,
# `python -m services.query`, `python -m services.sealer`, `python -m services.web`; `antq …` for the rest.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml ./
COPY events events
COPY infra infra
COPY projections projections
COPY services services
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# non-root; compose.yaml runs the services as the owner of the credentials directory (CREDENTIALS_OWNER)
RUN groupadd --system --gid 10001 antq \
 && useradd --system --uid 10001 --gid antq --home-dir /var/lib/antq --create-home antq
COPY --from=build /install /usr/local
USER antq
WORKDIR /var/lib/antq
CMD ["antq", "--help"]

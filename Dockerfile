# The image compose.yaml runs (server, worker, scheduler): Cobro and WeasyPrint's libraries.
FROM python:3.12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && useradd --create-home cobro
USER cobro
WORKDIR /srv/cobro

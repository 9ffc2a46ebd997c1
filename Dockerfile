# smapx: one image for the API (`smapx serve`) and the workers (`smapx worker`). CPU torch.
# The assets stage fetches the web map's JavaScript and base-map data from the npm registry (the
# Makefile's rule, as `make install` does); the build stage compiles the inference kernels
# (model/engine/*.c, one shared library per instruction set) into a wheel with those assets; the
# runtime image installs that wheel and has no compiler and no Node.js.
FROM node:20-slim AS assets

RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile package.json package-lock.json ./
RUN make service/static/vendor/.installed service/static/vendor/counties-10m.json

FROM python:3.11-slim AS build

RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY model ./model
COPY worker ./worker
COPY service ./service
COPY --from=assets /src/service/static/vendor ./service/static/vendor
COPY cli ./cli
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SMAPX_DATA_DIR=/data

RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels

RUN useradd --create-home --uid 1000 smapx && mkdir -p /data/jobs /data/cubes && chown -R smapx /data
USER smapx
VOLUME /data
EXPOSE 8000
CMD ["smapx", "--help"]

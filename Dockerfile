# smapx: one image for the API (`smapx serve`) and the workers (`smapx worker`). CPU torch.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SMAPX_DATA_DIR=/data \
    SMAPX_JOBS_DIR=/data/jobs

# gcc builds the inference kernels (model/engine_*.c) on first use; without it inference runs
# the float32 network, several times slower.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY model ./model
COPY worker ./worker
COPY service ./service
COPY cli ./cli
RUN pip install .

RUN useradd --create-home --uid 1000 smapx && mkdir -p /data/jobs /data/cubes && chown -R smapx /data
USER smapx
VOLUME /data
EXPOSE 8000
CMD ["smapx", "--help"]

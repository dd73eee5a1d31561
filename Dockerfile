# brainsearch: the API, workers and Ray nodes run from this one image (see docker-compose.yml).
# CPU build of PyTorch by default; for GPUs build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 BRAINSEARCH_DATA_DIR=/data PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY brainsearch ./brainsearch
COPY service ./service
COPY search_spaces ./search_spaces
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" -c constraints.txt ".[ray,postgres]" \
    && useradd --create-home --uid 10001 brainsearch && mkdir -p /data && chown brainsearch /data
USER brainsearch
VOLUME ["/data"]
EXPOSE 8000
CMD ["brainsearch", "serve", "--host", "0.0.0.0", "--port", "8000"]

# The GPU worker: Celery consuming the gpu queue, with CUDA torch.
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /venv
ENV PATH=/venv/bin:$PATH
WORKDIR /app
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY config config
COPY generation generation
COPY governance governance
COPY templates templates
COPY models models
COPY manage.py ./
RUN pip install --no-cache-dir .
ENV GENERATION_DEVICE=cuda
CMD ["celery", "-A", "config", "worker", "-Q", "gpu", "--concurrency", "1", "--pool", "solo", "--loglevel", "INFO"]

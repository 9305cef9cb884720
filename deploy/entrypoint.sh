#!/bin/sh
# Entrypoint of the wealth_pipeline image: choose the production Dagster instance file, then run CMD.
#
# YAML cannot branch, so deploy/dagster/ ships one file per variant and this script copies the chosen
# one to $DAGSTER_HOME/dagster.yaml:
#   WEALTH_DAGSTER_RUN_LAUNCHER=ecs                     -> ecs.yaml    (EcsRunLauncher, S3 compute logs)
#   WEALTH_DAGSTER_RUN_LAUNCHER=local (default), and
#     WEALTH_COMPUTE_LOG_BUCKET set                     -> s3logs.yaml (DefaultRunLauncher, S3 compute logs)
#     WEALTH_COMPUTE_LOG_BUCKET empty                   -> local.yaml  (DefaultRunLauncher, local compute logs)
# A dagster.yaml already in $DAGSTER_HOME (e.g. mounted) wins when WEALTH_DAGSTER_INSTANCE=keep.
set -eu

variants="${WEALTH_DAGSTER_VARIANTS_DIR:-/opt/dagster/variants}"
home="${DAGSTER_HOME:?DAGSTER_HOME must name the Dagster home folder}"
launcher="${WEALTH_DAGSTER_RUN_LAUNCHER:-local}"
bucket="${WEALTH_COMPUTE_LOG_BUCKET:-}"

if [ "${WEALTH_DAGSTER_INSTANCE:-}" = "keep" ] && [ -f "$home/dagster.yaml" ]; then
    variant=""
else
    case "$launcher" in
        ecs)
            if [ -z "$bucket" ]; then
                echo "wealth-entrypoint: WEALTH_DAGSTER_RUN_LAUNCHER=ecs needs WEALTH_COMPUTE_LOG_BUCKET" \
                     "(an ECS run's container is gone after the run, so its compute logs must go to S3)" >&2
                exit 64
            fi
            variant=ecs ;;
        local)
            if [ -n "$bucket" ]; then variant=s3logs; else variant=local; fi ;;
        *)
            echo "wealth-entrypoint: WEALTH_DAGSTER_RUN_LAUNCHER=$launcher is not one of: local, ecs" >&2
            exit 64 ;;
    esac
fi

# Batched event writes for every Dagster process of the image (webserver, daemon, code location, run
# tasks): same default as wealth_pipeline.settings.DAGSTER_TUNING; a value set by the platform wins.
export DAGSTER_EVENT_BATCH_SIZE="${DAGSTER_EVENT_BATCH_SIZE:-10000}"

if [ -n "$variant" ]; then
    mkdir -p "$home"
    cp "$variants/$variant.yaml" "$home/dagster.yaml"
    echo "wealth-entrypoint: Dagster instance variant '$variant' -> $home/dagster.yaml" >&2
fi

exec "$@"

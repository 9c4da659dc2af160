# shellcheck shell=bash
# Default environment for the local emulators (LocalStack S3 + moto DynamoDB, EventBridge and SQS).
#
# Source it (`. emulators/env.sh`); every variable is only set where it is
# unset or empty, so anything already in the environment wins.

# Repository root, wherever this file is sourced from.
if [[ -z "${CHUNKED_UPLOAD_REPO_ROOT:-}" ]]; then
    CHUNKED_UPLOAD_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fi

# Where the emulators' venv, logs, pid files and state live.
: "${EMULATORS_DIR:=${CHUNKED_UPLOAD_REPO_ROOT}/.emulators}"
: "${S3_PORT:=4566}"
: "${DYNAMODB_PORT:=4567}"

: "${AWS_ENDPOINT_URL_S3:=http://127.0.0.1:${S3_PORT}}"
: "${AWS_ENDPOINT_URL_DYNAMODB:=http://127.0.0.1:${DYNAMODB_PORT}}"
# moto also serves EventBridge and SQS, on the DynamoDB port (the events tests publish and read through them).
: "${AWS_ENDPOINT_URL_EVENTBRIDGE:=${AWS_ENDPOINT_URL_DYNAMODB}}"
: "${AWS_ENDPOINT_URL_SQS:=${AWS_ENDPOINT_URL_DYNAMODB}}"
: "${AWS_ACCESS_KEY_ID:=test}"
: "${AWS_SECRET_ACCESS_KEY:=test}"
: "${AWS_REGION:=us-east-1}"
: "${AWS_DEFAULT_REGION:=${AWS_REGION}}"
: "${CHUNKED_UPLOAD_BUCKET:=chunked-uploads}"
: "${CHUNKED_UPLOAD_TABLE:=chunked-uploads}"

export EMULATORS_DIR S3_PORT DYNAMODB_PORT \
    AWS_ENDPOINT_URL_S3 AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_EVENTBRIDGE AWS_ENDPOINT_URL_SQS \
    AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_DEFAULT_REGION \
    CHUNKED_UPLOAD_BUCKET CHUNKED_UPLOAD_TABLE

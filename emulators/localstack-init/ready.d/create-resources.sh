#!/bin/bash
# LocalStack "ready" init hook (docker-compose.yml): create the service's bucket
# and DynamoDB table. Mirrors emulators/create_resources.py. Idempotent.
set -euo pipefail

BUCKET="${CHUNKED_UPLOAD_BUCKET:-chunked-uploads}"
TABLE="${CHUNKED_UPLOAD_TABLE:-chunked-uploads}"

if awslocal s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
    echo "bucket $BUCKET already exists"
else
    awslocal s3api create-bucket --bucket "$BUCKET" >/dev/null
    echo "bucket $BUCKET created"
fi

# The same CORS rule as emulators/create_resources.py (docker-compose.yml mounts the file), replaced every start.
awslocal s3api put-bucket-cors --bucket "$BUCKET" --cors-configuration file:///etc/localstack/bucket-cors.json
echo "CORS rule set on $BUCKET"

if awslocal dynamodb describe-table --table-name "$TABLE" >/dev/null 2>&1; then
    echo "table $TABLE already exists"
else
    awslocal dynamodb create-table \
        --table-name "$TABLE" \
        --attribute-definitions AttributeName=upload_id,AttributeType=S \
        --key-schema AttributeName=upload_id,KeyType=HASH \
        --billing-mode PAY_PER_REQUEST \
        --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES >/dev/null
    awslocal dynamodb wait table-exists --table-name "$TABLE"
    echo "table $TABLE created"
fi

ttl_status="$(awslocal dynamodb describe-time-to-live --table-name "$TABLE" \
    --query 'TimeToLiveDescription.TimeToLiveStatus' --output text)"
if [[ "$ttl_status" == ENABLED || "$ttl_status" == ENABLING ]]; then
    echo "TTL on $TABLE already enabled"
else
    awslocal dynamodb update-time-to-live \
        --table-name "$TABLE" \
        --time-to-live-specification Enabled=true,AttributeName=expires_at >/dev/null
    echo "TTL on expires_at enabled for $TABLE"
fi

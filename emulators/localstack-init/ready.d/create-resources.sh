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

# Mirrors OWNER_INDEX of emulators/create_resources.py.
OWNER_INDEX='{"IndexName": "by_owner", "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"},
  {"AttributeName": "created_at_ms", "KeyType": "RANGE"}], "Projection": {"ProjectionType": "KEYS_ONLY"}}'

if awslocal dynamodb describe-table --table-name "$TABLE" >/dev/null 2>&1; then
    echo "table $TABLE already exists"
else
    awslocal dynamodb create-table \
        --table-name "$TABLE" \
        --attribute-definitions AttributeName=upload_id,AttributeType=S AttributeName=owner,AttributeType=S \
            AttributeName=created_at_ms,AttributeType=N \
        --key-schema AttributeName=upload_id,KeyType=HASH \
        --global-secondary-indexes "[$OWNER_INDEX]" \
        --billing-mode PAY_PER_REQUEST \
        --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES >/dev/null
    awslocal dynamodb wait table-exists --table-name "$TABLE"
    echo "table $TABLE created"
fi

# The listing's index (GET /upload), added to a table made before it existed.
if [[ "$(awslocal dynamodb describe-table --table-name "$TABLE" \
        --query "Table.GlobalSecondaryIndexes[?IndexName=='by_owner'] | length(@)" --output text)" == 0 ]]; then
    awslocal dynamodb update-table --table-name "$TABLE" \
        --attribute-definitions AttributeName=owner,AttributeType=S AttributeName=created_at_ms,AttributeType=N \
        --global-secondary-index-updates "[{\"Create\": $OWNER_INDEX}]" >/dev/null
    echo "index by_owner created on $TABLE"
fi
until [[ "$(awslocal dynamodb describe-table --table-name "$TABLE" \
        --query "Table.GlobalSecondaryIndexes[?IndexName=='by_owner'].IndexStatus | [0]" --output text)" == ACTIVE ]]; do
    sleep 1
done

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

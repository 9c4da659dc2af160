"""Uploads a file with tuspy, the tus project's Python client, unchanged: tuspy_upload.py ENDPOINT TOKEN PATH.

Prints {"url": the upload's URL, "checksums": the Upload-Checksum algorithm it sent} as JSON. Chunks of 256 KiB, each
with its SHA-1 (tuspy's upload_checksum), metadata filename.
"""

import json
import os
import sys

from tusclient import client


def main(endpoint, token, path):
    tus = client.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"})
    uploader = tus.uploader(
        path,
        chunk_size=256 * 1024,
        upload_checksum=True,
        metadata={"filename": os.path.basename(path)},
        retries=3,
        retry_delay=0.2,
    )
    uploader.upload()
    json.dump({"url": uploader.url, "checksums": uploader.checksum_algorithm_name}, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:])

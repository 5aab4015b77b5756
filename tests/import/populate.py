"""Fills a local moto S3 server for tests/s3_import.rs and prints what it holds.

moto runs with auth on (INITIAL_NO_AUTH_ACTION_COUNT=3): this script spends the
three unauthenticated actions on an IAM user, its S3 policy and its access key,
then signs everything else with that key. It prints one JSON object: the key,
the secret, the bucket and every object (key, size, sha256, etag).

Usage: populate.py ENDPOINT BUCKET BIG_BYTES MANY_KEYS
"""

import hashlib
import io
import json
import os
import random
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

REGION = "us-east-1"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


def credentials(endpoint):
    """The three unauthenticated actions: user, policy, access key."""
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam.create_user(UserName="importer")
    iam.put_user_policy(
        UserName="importer", PolicyName="s3", PolicyDocument=json.dumps(POLICY)
    )
    key = iam.create_access_key(UserName="importer")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def objects(big_bytes, many_keys):
    """(key, bytes) pairs: nested, empty, big, non-ASCII, odd keys, and keys
    outside the imported prefixes."""
    rng = random.Random(20240607)
    out = [
        ("data/a.txt", b"hello from s3\n"),
        ("data/nested/deeper/b.bin", rng.randbytes(5000)),
        ("data/nested/c.txt", b"c" * 1024),
        ("data/empty", b""),
        ("data/big.bin", os.urandom(big_bytes)),
        ("data/\u00fcn\u00ef/\u00df \U0001f642.txt", "grüße 🙂\n".encode()),
        ("data/pct%41 plus+.txt", b"percent and plus"),
        ("data/marker/", b""),
        ("other/outside.txt", b"not under the prefix"),
        ("data-extra/not-me.txt", b"shares the letters of the prefix, not the directory"),
        ("odd/good.txt", b"the one good key among the odd ones"),
        ("odd/a//b", b"empty segment"),
        ("odd/./dot", b"dot segment"),
        ("odd/x/../dotdot", b"dot-dot segment"),
        ("odd/" + "n" * 256, b"name too long"),
        ("odd/full-dir/", b"a directory marker with content"),
    ]
    out += [
        (f"data/many/{i:05d}.txt", f"object {i}\n".encode()) for i in range(many_keys)
    ]
    return out


def main():
    endpoint, bucket, big_bytes, many_keys = sys.argv[1:5]
    access_key_id, secret = credentials(endpoint)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket=bucket)
    # Big objects go up in 8 MiB parts, as real uploads do (ETag `…-N`).
    multipart = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
    listed = []
    for key, data in objects(int(big_bytes), int(many_keys)):
        if len(data) > 8 << 20:
            s3.upload_fileobj(io.BytesIO(data), bucket, key, Config=multipart)
            etag = s3.head_object(Bucket=bucket, Key=key)["ETag"]
        else:
            etag = s3.put_object(Bucket=bucket, Key=key, Body=data)["ETag"]
        etag = etag.strip('"')
        listed.append(
            {
                "key": key,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "etag": etag,
            }
        )
    print(
        json.dumps(
            {
                "access_key_id": access_key_id,
                "secret_access_key": secret,
                "bucket": bucket,
                "objects": listed,
            }
        )
    )


if __name__ == "__main__":
    main()

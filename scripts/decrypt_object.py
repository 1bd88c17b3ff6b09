#!/usr/bin/env python3
"""Decrypt one object of an encrypted qilbee-backup repository by hand, with nothing but the
passphrase and the `cryptography` package (no qilbee-backup installed): for the day the tool is
not at hand.

    QILBEE_PASSWORD=... python3 decrypt_object.py --repo DIR OBJECT > OUT

DIR is a copy of the repository (e.g. `aws s3 sync s3://bucket/prefix DIR`); OBJECT is a path in it:

    archives/<id>.tar.zst   the monthly archive → a .tar.zst: `zstd -dc OUT | tar -x -C TARGET`
    archives/<id>.json      an archive's record (JSON)
    backups/<id>.<digest>.json   a backup's manifest (JSON: every file, its SHA-256 and size)
    blobs/<xx>/<id>         one file's content, zstd-compressed: `zstd -dc OUT > FILE`

A repository opened by AWS KMS (a key file whose "kdf" is "aws-kms") has no passphrase: get its
master key from KMS, then pass it with --master-key-file:

    aws kms decrypt --ciphertext-blob fileb://<(jq -r .wrapped DIR/keys/ID.json | base64 -d) \
        --encryption-context qilbee-backup-repository=$(jq -r .id DIR/config.json) \
        --query Plaintext --output text | base64 -d > master.key

To find a file's blob: decrypt the manifest, take the file's sha256, and compute its blob id as
HMAC-SHA-256(id key, bytes of that sha256) — `--blob-id SHA256` prints it.

The format (qilbee_backup/crypto.py holds the same, with its reasons): the master key (64 bytes:
data key, id key) is in keys/<key id>.json, sealed by AES-256-GCM under scrypt(passphrase) with
"qilbee-backup master key\\0" + the repository id (config.json) as associated data. An object is
b"QBE1" | salt (16) | frames; each frame is up to 1 MiB of plaintext sealed by AES-256-GCM under
HKDF-SHA-256(data key, salt, "qilbee-backup object\\0"), nonce = frame index (11 bytes, big-endian)
+ 1 byte (1 on the last frame), associated data = the object's logical name on the last frame
(empty before it): blob:<id>, manifest:<backup id>, archive:<id> or archive-record:<id>. Output
before the last frame is not yet known to belong to this name: use the file only if this script
exits 0.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import json
import os
import re
import sys
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

FRAME, TAG = 1024 * 1024, 16
NAMES = [
    (re.compile(r"blobs/[0-9a-f]{2}/([0-9a-f]{64})"), "blob:{}"),
    (re.compile(r"backups/(\d{8}T\d{6}Z-[0-9a-f]{6})\.[0-9a-f]{64}\.json"), "manifest:{}"),
    (re.compile(r"archives/(\d{8}T\d{6}Z-[0-9a-f]{6})\.tar\.zst"), "archive:{}"),
    (re.compile(r"archives/(\d{8}T\d{6}Z-[0-9a-f]{6})\.json"), "archive-record:{}"),
]


def master_key(repo: Path, passphrase: str) -> bytes:
    repo_id = json.loads((repo / "config.json").read_bytes())["id"]
    for key_file in sorted((repo / "keys").glob("*.json")):
        k = json.loads(key_file.read_bytes())
        if k.get("kdf") != "scrypt":  # an AWS KMS key: see --master-key-file
            continue
        kek = Scrypt(salt=base64.b64decode(k["salt"]), length=32, n=k["n"], r=k["r"], p=k["p"]).derive(passphrase.encode())
        try:
            return AESGCM(kek).decrypt(base64.b64decode(k["nonce"]), base64.b64decode(k["wrapped"]),
                                       b"qilbee-backup master key\x00" + repo_id.encode())
        except InvalidTag:
            continue
    sys.exit("decrypt_object: the passphrase opens none of the key files in keys/")


def decrypt(source, out, data_key: bytes, name: str) -> None:
    header = source.read(20)
    if header[:4] != b"QBE1":
        sys.exit("decrypt_object: not an encrypted object (no QBE1 header)")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=header[4:], info=b"qilbee-backup object\x00").derive(data_key)
    aead, index = AESGCM(key), 0
    while True:
        frame = source.read(FRAME + TAG)
        last = len(frame) < FRAME + TAG
        nonce = index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        try:
            out.write(aead.decrypt(nonce, frame, name.encode() if last else b""))
        except InvalidTag:
            sys.exit(f"decrypt_object: frame {index} fails authentication: damaged or truncated")
        if last:
            return
        index += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, required=True, help="a local copy of the repository")
    ap.add_argument("object", nargs="?", help="the object's path in the repository")
    ap.add_argument("--blob-id", metavar="SHA256", help="print the blob id of a content's SHA-256 instead")
    ap.add_argument("--master-key-file", type=Path, metavar="FILE",
                    help="the 64-byte master key itself instead of a passphrase (a KMS key file's, from aws kms decrypt)")
    args = ap.parse_args()
    if args.master_key_file:
        master = args.master_key_file.read_bytes()
        if len(master) != 64:
            sys.exit(f"decrypt_object: {args.master_key_file} holds {len(master)} bytes, not a 64-byte master key")
    else:
        passphrase = os.environ.get("QILBEE_PASSWORD") or getpass.getpass("repository passphrase: ")
        master = master_key(args.repo, passphrase)
    if args.blob_id:
        print(hmac.new(master[32:], bytes.fromhex(args.blob_id), hashlib.sha256).hexdigest())
        return 0
    if not args.object:
        ap.error("give OBJECT or --blob-id")
    name = next((form.format(m.group(1)) for rx, form in NAMES if (m := rx.fullmatch(args.object))), None)
    if name is None:
        ap.error(f"{args.object}: not an object path of a repository (see the forms above)")
    with open(args.repo / args.object, "rb") as source:
        decrypt(source, sys.stdout.buffer, master[:32], name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

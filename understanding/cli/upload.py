"""`understanding upload FILE`: store media on the server for a later `jobs submit --upload-id`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from understanding.cli import connect, output
from understanding.cli.detect import detect_modality

if TYPE_CHECKING:
    from understanding.cli import Subcommands


def register(sub: Subcommands) -> None:
    upload = sub.add_parser(
        "upload",
        help="store a media file on the server for a later `jobs submit --upload-id`",
        description="Stream FILE to the server in chunks (with a progress bar) and print its upload id.",
    )
    upload.add_argument("file", help="media file to store")
    upload.add_argument("--media-id", help="media id to remember with the upload")
    connect.add_client_arguments(upload)
    upload.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from understanding_client import UnderstandingError

    path = args.file
    if not os.path.isfile(path):
        return output.fail(f"{path}: no such file")
    with connect.client(args) as client:
        try:
            with output.UploadBar(os.path.basename(path), hidden=args.json) as bar:
                upload = client.upload_media(path, media_id=args.media_id or "", progress=bar)
        except UnderstandingError as error:
            return output.report(error, client.target)
    if args.json:
        output.print_json(output.message_dict(upload.raw))
        return 0
    print(f"{upload.upload_id}  {upload.size_bytes} bytes  sha256 {upload.sha256[:16]}...")
    kind = detect_modality(path)
    print(f"next: understanding jobs submit --upload-id {upload.upload_id} --modality {kind}", file=sys.stderr)
    return 0

"""`understanding analyze FILE | --text TEXT`: analyze inline on a running server and print the result."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from understanding.cli import connect, output
from understanding.cli.detect import FileModality, detect_modality

if TYPE_CHECKING:
    from understanding.cli import Subcommands
    from understanding_client import Analysis, Client


def register(sub: Subcommands) -> None:
    analyze = sub.add_parser("analyze", help="analyze a file (text, audio or video) or --text on a running server")
    analyze.add_argument("file", nargs="?", help="media file; its modality is detected from its content")
    analyze.add_argument("--text", action="append", help="text to analyze (repeat for several)")
    analyze.add_argument("--language", help="force the spoken language (ISO 639-1), default: detect")
    analyze.add_argument("--translate", action="store_true", help="translate speech to English")
    analyze.add_argument("--words", action="store_true", help="word timestamps")
    analyze.add_argument("--media-id", help="media id (default: derived from the text)")
    analyze.add_argument("--embeddings", action="store_true", help="include the vectors in the output")
    connect.add_client_arguments(analyze)
    analyze.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    if args.file:
        return _analyze_file(args, args.file)
    if not args.text:
        return output.fail("give a FILE to analyze or --text TEXT")
    return _analyze_texts(args, args.text, args.media_id or "")


def _analyze_texts(args: argparse.Namespace, texts: list[str], media_id: str) -> int:
    from rich.table import Table

    from understanding_client import TextItem, UnderstandingError

    with connect.client(args) as client:
        try:
            items = [TextItem(text, media_id=media_id) for text in texts]
            results = client.analyze_text(items, return_embeddings=args.embeddings)
        except UnderstandingError as error:
            return output.report(error, client.target)
    if args.json:
        output.print_json({"results": [output.message_dict(a.raw) for a in results]} if results else {})
        return 0
    console = output.console()
    for result in results:
        table = Table(title=f"{result.media_id}  language={output.language(result.language)}")
        table.add_column("tag")
        table.add_column("score", justify="right")
        for tag in result.tags:
            table.add_row(tag.label, f"{tag.score:.3f}")
        if not result.tags:
            table.add_row("(none)", "")
        console.print(table)
        console.print(f"{len(result.chunks)} chunk(s) indexed, model {output.model_name(result.embedding_model)}")
    return 0


def _analyze_file(args: argparse.Namespace, path: str) -> int:
    from understanding_client import UnderstandingError

    if not os.path.isfile(path):
        return output.fail(f"{path}: no such file")
    modality = detect_modality(path)
    if modality == "text":
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        return _analyze_texts(args, [text], args.media_id or os.path.basename(path).replace(" ", "_"))
    with connect.client(args) as client:
        try:
            analysis = _upload(client, args, path, modality)
        except UnderstandingError as error:
            return output.report(error, client.target)
    if args.json:
        output.print_json({"analysis": output.message_dict(analysis.raw)})
    else:
        output.print_analysis(analysis)
    return 0


def _upload(client: Client, args: argparse.Namespace, path: str, modality: FileModality) -> Analysis:
    """Stream the file to Transcribe or AnalyzeVideo (the audio track, where video analysis is missing)."""
    from understanding_client import SpeechOptions, Unimplemented

    speech = SpeechOptions(language=args.language or "", translate=args.translate, word_timestamps=args.words)
    media_id, embeddings = args.media_id or "", args.embeddings
    with output.UploadBar(os.path.basename(path), hidden=args.json) as bar:
        if modality == "video":
            try:
                return client.analyze_video(
                    path, media_id=media_id, speech=speech, return_embeddings=embeddings, progress=bar
                )
            except Unimplemented:
                bar.console.print("video analysis is not available on this server: transcribing the audio track")
        return client.transcribe(
            path,
            media_id=media_id,
            language=speech.language,
            translate=speech.translate,
            word_timestamps=speech.word_timestamps,
            return_embeddings=embeddings,
            progress=bar,
        )

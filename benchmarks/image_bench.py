"""AnalyzeImage latency through a real server: p50/p99 per image, with and without the picture models.

    python benchmarks/image_bench.py [--quick] [--images N] [--concurrency C]

Images (not written by us): the ordinary real photos and video frames of
Debian's opencv-doc and scikit-image (benchmarks/moderation_direct.py's
`natural_frames`; `bash scripts/fetch_ts_eval_data.sh`), each re-encoded as a
JPEG the size of a profile photo (longest side 1080 px). One server with the
default configuration (open_nsfw, PP-OCRv4, BlazeFace, the multilingual
embedder, the embedded store).

- sequential: one request at a time, every image twice: with the picture
  models (the default) and without (`ImageOptions.skip_nudity/skip_ocr`, the
  baseline in the same run); p50/p99 of the RPC as the client sees it;
- concurrent: `--concurrency` clients at once with the models: images/s and p99.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import percentile, result, start_server  # noqa: E402
from moderation_direct import natural_frames  # noqa: E402

MD = (("x-tenant-id", "bench-image"),)
PROFILE_SIDE = 1080


def profile_jpeg(image: np.ndarray) -> bytes:
    h, w = image.shape[:2]
    scale = PROFILE_SIDE / max(h, w)
    resized = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return bytes(cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())


def main() -> None:
    import grpc

    from tests.support.upload import upload_requests
    from understanding.v1 import understanding_pb2 as pb
    from understanding.v1 import understanding_pb2_grpc

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="10 images (CI smoke)")
    args = parser.parse_args()
    count = 10 if args.quick else args.images
    images = [profile_jpeg(frame) for frame in natural_frames(count)]
    if not images:
        raise SystemExit("no images: run `bash scripts/fetch_ts_eval_data.sh` first")
    server = start_server()
    try:
        print(
            f"server ready in {server.serving_after_s:.1f} s; {len(images)} real images, longest side {PROFILE_SIDE} px"
        )
        with grpc.insecure_channel(server.target) as channel:
            stub = understanding_pb2_grpc.UnderstandingStub(channel)

            def analyze(k: int, data: bytes, *, models: bool, tag: str) -> float:
                options = pb.ImageOptions(skip_nudity=not models, skip_ocr=not models)
                header = pb.UploadHeader(media_id=f"{tag}-{k}", filename="photo.jpg", image=options)
                started = time.perf_counter()
                stub.AnalyzeImage(upload_requests(data, header), metadata=MD, timeout=300)
                return time.perf_counter() - started

            for k, data in enumerate(images[:3]):  # warm-up: first calls of every model
                analyze(k, data, models=True, tag="warm")
            with_models = [analyze(k, data, models=True, tag="on") for k, data in enumerate(images)]
            without = [analyze(k, data, models=False, tag="off") for k, data in enumerate(images)]
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                concurrent = list(
                    pool.map(lambda item: analyze(item[0], item[1], models=True, tag="par"), enumerate(images))
                )
            wall = time.perf_counter() - started
    finally:
        server.stop()

    def ms(values: list[float], q: float) -> float:
        return percentile(values, q) * 1000

    print(f"{'AnalyzeImage':40} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'with the picture models (default)':40} {ms(with_models, 50):8.0f} {ms(with_models, 99):8.0f}")
    print(f"{'without (skip_nudity, skip_ocr)':40} {ms(without, 50):8.0f} {ms(without, 99):8.0f}")
    print(
        f"{args.concurrency} clients at once, with the models: {len(images) / wall:.1f} images/s, "
        f"p50 {ms(concurrent, 50):.0f} ms, p99 {ms(concurrent, 99):.0f} ms"
    )
    result("image RPC p50 ms, picture models on vs off", ms(with_models, 50), ms(without, 50), "report", "ms")
    result("image RPC p99 ms, picture models on vs off", ms(with_models, 99), ms(without, 99), "report", "ms")
    result(f"images/s with {args.concurrency} clients (picture models on)", len(images) / wall, None, "report")


if __name__ == "__main__":
    main()

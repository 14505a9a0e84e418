"""ONNX Runtime sessions as every model here runs them: on the CPU, sharing it politely."""

from __future__ import annotations

import pathlib
from typing import Any

__all__ = ["cpu_session"]


def cpu_session(path: pathlib.Path, threads: int = 0) -> Any:
    """An `InferenceSession` for `path` with `threads` intra-op threads (0: one per core).

    Operators run one at a time (no inter-op pool), and idle threads sleep
    instead of busy-waiting between operators: on 2 cores the text embedders,
    the picture models and Whisper's decodes run side by side, and spinning
    threads took the CPU the others needed (measured: up to 3x CPU per text
    under load, and live frames that waited on a Whisper decode).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

"""The live path: a call or a live stream analysed while it happens (see session.py)."""

from understanding.pipelines.live.asr import AsrSettings, DecodeJob, StreamingAsr
from understanding.pipelines.live.endpointing import EndpointSettings
from understanding.pipelines.live.recognizer import WhisperRecognizer
from understanding.pipelines.live.session import LiveResult, LiveSession, LiveSettings
from understanding.pipelines.live.signals import (
    DecisionPublisher,
    SignalStep,
    StreamModeration,
    TaggerSignals,
    TranscriptSignals,
)

__all__ = [
    "AsrSettings",
    "DecisionPublisher",
    "DecodeJob",
    "EndpointSettings",
    "LiveResult",
    "LiveSession",
    "LiveSettings",
    "SignalStep",
    "StreamModeration",
    "StreamingAsr",
    "TaggerSignals",
    "TranscriptSignals",
    "WhisperRecognizer",
]

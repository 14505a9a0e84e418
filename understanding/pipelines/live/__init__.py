"""The live path: a call or a live stream analysed while it happens (see session.py)."""

from understanding.pipelines.live.asr import AsrSettings, DecodeJob, StreamingAsr
from understanding.pipelines.live.endpointing import EndpointSettings
from understanding.pipelines.live.pictures import FrameCheck, LivePictures
from understanding.pipelines.live.recognizer import WhisperRecognizer
from understanding.pipelines.live.session import LiveResult, LiveSession, LiveSettings
from understanding.pipelines.live.signals import (
    DecisionPublisher,
    PictureChecks,
    SignalStep,
    StreamModeration,
    TaggerSignals,
    TranscriptSignals,
)
from understanding.pipelines.live.speakers import LiveSpeakers

__all__ = [
    "AsrSettings",
    "DecisionPublisher",
    "DecodeJob",
    "EndpointSettings",
    "FrameCheck",
    "LivePictures",
    "LiveResult",
    "LiveSession",
    "LiveSettings",
    "LiveSpeakers",
    "PictureChecks",
    "SignalStep",
    "StreamModeration",
    "StreamingAsr",
    "TaggerSignals",
    "TranscriptSignals",
    "WhisperRecognizer",
]

"""understanding: multimodal understanding service (text, speech, video)."""

__version__ = "0.1.0"

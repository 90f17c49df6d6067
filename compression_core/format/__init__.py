"""The `.bin` container: records in, bytes out, and back (spec: docs/format.md)."""

from compression_core.format.reader import decode_records, decode_state_dict
from compression_core.format.writer import EncodedModel, StreamStats, encode_records

__all__ = ["EncodedModel", "StreamStats", "decode_records", "decode_state_dict", "encode_records"]

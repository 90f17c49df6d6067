"""Typed errors, so callers (CLI, service, worker) can turn them into clear messages."""


class CompressionError(Exception):
    """Base class of every error this library raises on purpose."""


class InputError(CompressionError):
    """An input file (state dict, data set, .bin) is unreadable, unsafe or of the wrong kind."""


class SpecError(CompressionError):
    """A spec is valid JSON but cannot be applied (e.g. a rule selects nothing in this model)."""


class FormatError(InputError):
    """A .bin file is corrupted, truncated, hostile or of an unknown version."""


class Cancelled(CompressionError):
    """The caller asked the running pipeline to stop (checked between stages)."""


class UnsupportedModel(InputError):
    """A readable model input that this service will not build or convert: code shipped with it
    (`auto_map`), an architecture the installed library does not ship, an ONNX operator, control flow or an
    opset out of range. The API answers 422 naming it; other InputErrors on an upload are 415."""


class TrainingDiverged(CompressionError):
    """(Re)training's loss became NaN or infinite: the job fails naming the stage, epoch and learning rate
    rather than writing weights that compute NaN."""

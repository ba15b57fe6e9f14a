"""A short digest of a data set's tensors, recorded with a training run so that a resume can tell
whether it trains on the same data."""

import hashlib

import torch


def fingerprint(*tensors):
    """
    The first 16 hex digits of the SHA-256 of each tensor's dtype, shape and values, in order: equal
    for equal data wherever they are held (CPU or GPU, any memory layout), different for different
    values, order, shape or dtype.

    :param torch.Tensor tensors: the data (e.g. a training set's images and labels).
    :rtype: str
    """
    digest = hashlib.sha256()
    for tensor in tensors:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"fingerprint takes torch tensors; got {type(tensor).__name__}")
        values = tensor.detach().cpu().contiguous()
        digest.update(f"{values.dtype}{tuple(values.shape)};".encode())
        # the bytes, through torch (numpy has no bfloat16)
        digest.update(values.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


__all__ = ["fingerprint"]

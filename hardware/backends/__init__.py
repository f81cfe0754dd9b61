"""Compile backends (ONNX Runtime, OpenVINO, TensorRT, ...): one module per backend, registered in ``BACKENDS``.

The pipeline spec validates its ``compile`` targets against this table, so an
unknown target is a one-line error with a suggestion before any compute.
"""

from __future__ import annotations

from registry.plugins import Registry

BACKENDS: Registry[type] = Registry("compile target")

"""Evaluation: image-quality metrics under an explicit, printable protocol (docs/design.md §3).

See :mod:`iconet.evaluation.metrics` (``MetricProtocol``, ``psnr``, ``ssim``, ``nmse``,
``evaluate_volume``, ``aggregate``). Nothing heavy is imported here.
"""

"""Evaluation: image-quality metrics under an explicit, printable protocol (DESIGN §3).

See :mod:`iconet.evaluation.metrics` (``MetricProtocol``, ``psnr``, ``ssim``, ``nmse``,
``evaluate_volume``, ``aggregate``). Nothing heavy is imported here.
"""

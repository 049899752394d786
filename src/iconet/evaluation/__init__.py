"""Evaluation: image-quality metrics under an explicit, printable protocol (docs/design.md §3).

See :mod:`iconet.evaluation.metrics` (``MetricProtocol``, ``psnr``, ``ssim``, ``nmse``,
``evaluate_volume``, ``aggregate``), :mod:`iconet.evaluation.stats` (means and 95 % intervals
over volumes and mask draws, paired differences, the claim rule) and
:mod:`iconet.evaluation.runner` (``iconet eval``). Nothing heavy is imported here.
"""

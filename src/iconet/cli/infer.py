"""``iconet infer INPUT OUTPUT``: super-resolve a scan (or a folder of scans) into the same format.

INPUT is a NIfTI, DICOM file, DICOM series folder, PNG/TIFF or NPY; OUTPUT gets the format its
extension names (a path without extension, for a DICOM input, is a new DICOM series folder).
A folder INPUT holding volumes (not a single DICOM series) is processed volume by volume into
the folder OUTPUT, sub-folders included (the same relative paths; a DICOM series among the
files of INPUT itself becomes OUTPUT/<INPUT name>); a failing volume is reported and skipped,
and the exit status is 1 if any failed. Under ``torchrun`` each rank takes its share.

Without --model, the shipped ICONet of --scale (iconet-t1-x2, iconet-t1-x4) is used. Slices are
tiled only when a batch of whole slices would not fit --memory-budget (measured per model,
see iconet.inference); --tile forces a tile side, --tile 0 never tiles.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from iconet.cli import UserError, add_quiet
from iconet.progress import progress_bar, say
from iconet.data.folders import is_volume_folder, plan_folder, shard

PEERS = ("bicubic", "zerofill")
NO_SHIPPED_HINT = "--model DIR works with any exported model (iconet export); --model bicubic interpolates"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "infer",
        help="super-resolve a scan or a folder of scans",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, metavar="INPUT",
                   help="NIfTI, DICOM file or series folder, PNG/TIFF/NPY, or a folder of volumes")
    p.add_argument("output", type=Path, metavar="OUTPUT",
                   help="output file (its extension picks the format), DICOM series folder, or folder of volumes")
    p.add_argument("--series-uid", default=None, metavar="UID",
                   help="the series to read from a DICOM folder holding several (listed when none is given)")
    p.add_argument("--model", default=None, metavar="DIR_OR_NAME",
                   help="exported model folder, shipped model name, or a parameter-free peer "
                        "(bicubic, zerofill); default: the shipped ICONet of --scale (iconet-t1-x<scale>)")
    p.add_argument("--scale", type=int, choices=(2, 4, 8), default=None,
                   help="upscaling factor: picks the shipped model when --model is not given "
                        "(default 2); otherwise checked against the model's")
    p.add_argument("--grid", choices=("kspace", "centre"), default="kspace",
                   help="sampling grid for the parameter-free peers (exported models carry theirs)")
    p.add_argument("--plane", default=None, help="axial, coronal, sagittal or an axis 0-2 "
                   "(default: the plane of the two finest axes)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), default="fp32",
                   help="arithmetic of the forward pass (autocast): fp32 (default), bf16, fp16 (CUDA only), or "
                        "auto: bf16 on a CPU with AVX512-BF16/AMX or a CUDA GPU with native bf16, else fp32")
    p.add_argument("--batch", type=int, default=8, help="slices per forward pass")
    p.add_argument("--tile", type=int, default=None,
                   help="LR tile side (0: never tile; default: the largest tile that fits --memory-budget)")
    p.add_argument("--memory-budget", default=None, metavar="SIZE",
                   help="memory one forward pass may use when choosing tiles, e.g. 512MiB, 2GiB "
                        "(default: a quarter of the free GPU memory; on a CPU a quarter of the "
                        "available RAM, at most 2GiB)")
    p.add_argument("--pad", choices=("auto", "none", "circular"), default="auto",
                   help="slice borders of k-space-grid models: circular padding (the acquisition is "
                        "periodic over its field of view) for every slice, none, or auto (default): "
                        "only for slices whose border cuts through the object (a cropped field of view)")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="torch (default), or onnx: run the model folder's model.onnx (iconet export "
                        "MODEL --onnx) with onnxruntime, fp32 (needs pip install iconet[onnx])")
    p.add_argument("--save-rec", action="store_true", help="also write the reconstruction (artifact-free) output")
    p.add_argument("--allow-domain-mismatch", action="store_true",
                   help="run the model on a scan of another modality than it was trained for (e.g. a CT "
                        "through an MR model); without it such a scan is refused")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    add_quiet(p)
    from iconet.cli import isotropic

    isotropic.add_arguments(p)
    p.set_defaults(func=run)


def _plane(text: str | None) -> str | int | None:
    if text is None:
        return None
    return int(text) if text.isdigit() else text


def load(args: argparse.Namespace) -> tuple[Any, str, Any, str]:
    """``(model, grid, normalization config, description)`` for the ``--model`` asked."""
    import torch

    from iconet.config import from_dict
    from iconet.data.normalize import NormalizeConfig
    from iconet.runtime import resolve_device

    device = resolve_device(args.device)
    name = model_name(args)
    scale = args.scale or 2
    if name in PEERS:
        from iconet.models import build_model

        if getattr(args, "runtime", "torch") == "onnx":
            raise UserError(f"--runtime onnx runs an exported model's model.onnx; {name} runs in PyTorch only")
        model = build_model(name, scale=scale, grid=args.grid).to(device).eval()
        _check_pad(args.pad, args.grid, name)
        return model, args.grid, NormalizeConfig(), f"iconet {name} x{scale} ({args.grid} grid)"
    if getattr(args, "runtime", "torch") == "onnx":
        from iconet.onnx_runtime import load_onnx_model

        model, info = load_onnx_model(name, device=args.device)
    else:
        from iconet.hub import load_model

        model, info = load_model(name, device=device)
        model = model.to(memory_format=torch.channels_last)

    if args.scale is not None and model.scale != args.scale:
        raise UserError(f"model {name} upscales x{model.scale}, but --scale {args.scale} was asked")
    _check_pad(args.pad, info.grid, name)
    norm = from_dict(NormalizeConfig, info.normalization) if info.normalization else NormalizeConfig()
    return model, info.grid, norm, f"iconet {info.name} x{model.scale} ({name}, step {info.step})"


def _check_pad(pad: str, grid: str, name: str) -> None:
    """``--pad circular`` fits only k-space-grid models (a periodic acquisition)."""
    if pad == "circular" and grid != "kspace":
        raise UserError(f"{name}: --pad circular extends slices as a k-space acquisition repeats, but this "
                        f"model is on the {grid} grid (bicubic degradation); use --pad auto or none")


def model_name(args: argparse.Namespace) -> str:
    """``--model``, or the shipped ICONet of ``--scale`` (a one-line error naming the shipped
    models when there is none of that scale)."""
    if args.model is not None:
        return args.model
    from iconet.hub import shipped_model

    return shipped_model(args.scale or 2, hint=NO_SHIPPED_HINT)


def options(args: argparse.Namespace) -> Any:
    """The :class:`~iconet.inference.InferenceOptions` asked for (bad values: ValueError)."""
    from iconet.inference import InferenceOptions

    _check_runtime(args)
    return InferenceOptions(plane=_plane(args.plane), batch=args.batch, tile=args.tile,
                            memory_budget_bytes=args.memory_budget, precision=args.precision,
                            save_rec=args.save_rec, pad=args.pad)


def _check_runtime(args: argparse.Namespace) -> None:
    """``--runtime onnx``: onnxruntime installed, fp32, SR only (the graph has no reconstruction)."""
    if getattr(args, "runtime", "torch") != "onnx":
        return
    from iconet.onnx_runtime import OnnxRuntimeMissing, require_onnxruntime

    try:
        require_onnxruntime()
    except OnnxRuntimeMissing as err:
        raise UserError(f"--runtime onnx: {err}") from None
    if args.precision == "auto":
        args.precision = "fp32"  # the graph's only precision
    if args.precision != "fp32":
        raise UserError(f"--runtime onnx runs the fp32 graph; --precision {args.precision} is for --runtime torch")
    if args.save_rec:
        raise UserError("--runtime onnx: the ONNX graph holds the SR path only; --save-rec needs --runtime torch")


def _check_output(path: Path, overwrite: bool) -> None:
    """Refuse an existing OUTPUT (unless overwrite) and an unwritable folder, before any compute."""
    if path.exists() and not overwrite:
        raise UserError(f"{path}: output exists (use --overwrite to replace it)")
    _check_writable(path.parent if path.parent != Path("") else Path("."))


def _check_writable(parent: Path) -> None:
    if not parent.is_dir():
        raise UserError(f"{parent}: output folder does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".iconet-write-test-"):
            pass
    except OSError as err:
        raise UserError(f"{parent}: output folder is not writable ({err.strerror})") from None


def _rec_path(path: Path) -> Path:
    """Where ``--save-rec`` writes: ``scan_sr.nii.gz`` → ``scan_sr_rec.nii.gz`` (folders too)."""
    from iconet.data.validate import extension

    ext = extension(path)
    stem = path.name[: len(path.name) - len(ext)] if ext else path.name
    return path.with_name(stem + "_rec" + ext)


def model_domain(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``domain`` section of the model asked for (``None`` for the parameter-free peers and
    models exported without one): what :func:`iconet.domain.check_input` checks scans against."""
    name = model_name(args)
    if name in PEERS:
        return None
    from iconet.hub import read_info

    return read_info(name).domain


def _one(src: Path, dst: Path, model: Any, grid: str, norm: Any, description: str, args: argparse.Namespace,
         domain: dict[str, Any] | None = None) -> None:
    import shutil

    from iconet.data.io import read_volume, write_volume
    from iconet.domain import check_input
    from iconet.inference import slice_axis, super_resolve_volume
    from iconet.memory import estimate_memory

    # One bar per volume, shown at once: its description names the phase (reading, the
    # volume's slices, writing); the slice count moves after each batch (--batch).
    with progress_bar(desc=f"reading {src.name}", unit="slice", quiet=args.quiet) as bar:
        volume = read_volume(src, series_uid=args.series_uid)
        for note in check_input(domain, volume, model=model_name(args), source=str(src),
                                allow=args.allow_domain_mismatch):
            say(f"note: {note}", err=True)
        opts = options(args)
        if opts.tile is None:  # the tile choice measures the model's memory once (seconds on a CPU)
            bar.set_description_str("measuring the model's memory use")
            estimate_memory(model, precision=opts.precision)  # cached: super_resolve_volume reuses it
        bar.reset(total=volume.shape[slice_axis(volume, opts.plane)])
        bar.set_description_str(src.name)
        out = super_resolve_volume(model, volume, grid=grid, normalization=norm, options=opts,
                                   progress=lambda done: bar.update(done - bar.n))
        bar.set_description_str(f"writing {dst.name}")
        targets = [(out["sr"], dst)] + ([(out["rec"], _rec_path(dst))] if "rec" in out else [])
        for vol, path in targets:
            if path.exists() and args.overwrite:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            write_volume(vol, path, reference=volume, description=description)


def run(args: argparse.Namespace) -> int:
    from iconet.runtime import keep_freed_memory

    keep_freed_memory()  # this process is ours: reuse freed activations (2x at 512^2 fp32, see runtime)
    src, dst = args.input, args.output
    if not src.exists():
        raise UserError(f"{src}: input not found")
    if src.resolve() == dst.resolve():
        raise UserError(f"{dst}: output would overwrite the input")
    from iconet.cli import isotropic

    if isotropic.wanted(args):  # --isotropic, or --model DIR of a fitted through-plane model
        return isotropic.run(args, _check_output)
    options(args)  # bad --memory-budget, --tile, ... stop here
    if is_volume_folder(src):
        if args.series_uid is not None:
            raise UserError(f"{src}: --series-uid picks a series of one DICOM folder, but this is a folder of "
                            "volumes; give the DICOM folder that holds the series as INPUT")
        return _run_dataset(src, dst, args)
    _check_output(dst, args.overwrite)
    if args.save_rec:
        _check_output(_rec_path(dst), args.overwrite)
    with progress_bar(desc="loading model", quiet=args.quiet, bar_format="{desc} {elapsed}"):
        model, grid, norm, description = load(args)
    _one(src, dst, model, grid, norm, description, args, domain=model_domain(args))
    print(f"wrote {dst}" + (f" and {_rec_path(dst)}" if args.save_rec else ""))
    return 0


def _run_dataset(src: Path, dst: Path, args: argparse.Namespace) -> int:
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    args.quiet = args.quiet or rank != 0  # under torchrun only rank 0 draws bars (one terminal)
    files = plan_folder(src, dst)
    if not files:
        raise UserError(f"{src}: no volumes in this folder")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst}: output for a folder of volumes must be a folder")
    model_name(args)  # a missing shipped model stops before OUTPUT is made
    dst.mkdir(parents=True, exist_ok=True)
    _check_writable(dst)
    mine = shard(files, rank, world)
    failures: list[str] = []
    # The volumes' bar stays on screen; each volume's slice bar (from _one) shows below it.
    with progress_bar(len(mine), desc="loading model", unit="volume", quiet=args.quiet, leave=True) as volumes:
        model, grid, norm, description = load(args)
        domain = model_domain(args)
        volumes.set_description_str("volumes")
        for f, rel, out in mine:
            try:
                if out.exists() and not args.overwrite:
                    raise UserError(f"{out}: output exists (use --overwrite to replace it)")
                out.parent.mkdir(parents=True, exist_ok=True)
                _one(f, out, model, grid, norm, description, args, domain=domain)
                say(f"ok      {rel.as_posix()}")
            except (ValueError, OSError, UserError) as err:
                failures.append(f"{f}: {str(err).splitlines()[0]}")
                say(f"FAILED  {rel.as_posix()}: {str(err).splitlines()[0]}", err=True)
            volumes.update(1)
    done = len(mine) - len(failures)
    where = f" (rank {rank} of {world})" if world > 1 else ""
    print(f"{done} of {len(mine)} volume(s) written to {dst}{where}")
    if failures:
        print("failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0

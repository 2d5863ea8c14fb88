"""Reading and writing still images with clear errors, and pairing IR/visible folders by stem."""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import cv2
import numpy as np

from streamfuse import StreamfuseError

log = logging.getLogger("streamfuse")

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def read_image(path, what: str = "image") -> np.ndarray:
    """Read an image unchanged in depth (uint8 or uint16; gray or BGR)."""
    path = Path(path)
    if not path.is_file():
        raise StreamfuseError(f"{path}: {what} file not found")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise StreamfuseError(f"{path}: cannot decode as {'an' if what[0] in 'aeiouAEIOU' else 'a'} {what} (expected a PNG/JPEG/BMP/TIFF image)")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img


def read_pair(ir_path, vis_path) -> tuple[np.ndarray, np.ndarray]:
    """An IR image (uint8/uint16 gray; 3 equal channels read as gray) and a visible image (BGR or gray,
    16-bit files brought to uint8), as the stage takes them."""
    from streamfuse.color import to_gray

    ir = to_gray(read_image(ir_path, "IR image"), name=str(ir_path))
    vis = read_image(vis_path, "visible image")
    if vis.dtype != np.uint8:
        vis = (vis / 257).astype(np.uint8)
    return ir, vis


def write_image(path, img: np.ndarray) -> Path:
    """Write atomically (temp file + rename), so an interrupted run leaves no half-written file.
    The file gets the usual permissions (0666 less the umask, e.g. 0644), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower() or ".png"
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise StreamfuseError(f"{path}: cannot encode an image with extension '{ext}'")
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}{ext}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_folder_writable(folder, shown=None) -> None:
    """Fail before any work, naming the path, when files cannot be written in ``folder`` (created
    later by the writer if missing: the nearest existing parent is probed, and nothing is left behind)."""
    folder = Path(folder)
    shown = shown or str(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StreamfuseError(f"{shown}: cannot write to folder '{folder}' ('{existing}' is a file)")
    probe = existing / f".streamfuse-probe-{secrets.token_hex(8)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as e:
        raise StreamfuseError(f"{shown}: cannot write to folder '{existing}' ({e.strerror or e})") from None


def list_images(folder) -> dict[str, Path]:
    """stem -> path for the image files directly in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StreamfuseError(f"{folder}: not a folder")
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTS and p.is_file()}
    if not files:
        raise StreamfuseError(f"{folder}: no image files (expected {', '.join(sorted(IMAGE_EXTS))})")
    return files


def pair_folders(ir_dir, vis_dir) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """Pair files of two folders by stem -> (pairs, stems only in IR, stems only in visible)."""
    ir, vis = list_images(ir_dir), list_images(vis_dir)
    pairs = [(s, ir[s], vis[s]) for s in sorted(ir) if s in vis]
    return pairs, sorted(set(ir) - set(vis)), sorted(set(vis) - set(ir))


def source_pairs(ir_dir, vis_dir) -> list[tuple[str, Path, Path]]:
    """``pair_folders`` for a run: stems without a partner are listed in one warning and skipped;
    no stem in common is an error."""
    pairs, only_ir, only_vis = pair_folders(ir_dir, vis_dir)
    for side, stems in (("IR", only_ir), ("visible", only_vis)):
        if stems:
            log.warning("%d %s file(s) without a partner, skipped: %s", len(stems), side, ", ".join(stems))
    if not pairs:
        raise StreamfuseError(f"no file stems in common between {ir_dir} and {vis_dir}")
    return pairs

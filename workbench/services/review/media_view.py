"""What image file a reviewer's browser receives: a blurred and/or greyscale copy made on the
server until the reviewer reveals the original."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageFilter, ImageOps

from workbench.config import private_dir, private_file


def display_image(
    asset_path: Path, sha256: str, cache_dir: Path, *, blur: bool, greyscale: bool
) -> Path:
    """The file to send to the browser: the original only when neither blur nor grey is asked.

    The blurred copy is made here, on the server, so the unblurred bytes never reach a browser
    before the reviewer clicks to reveal (a CSS blur would send the original).
    """
    if not blur and not greyscale:
        return asset_path
    mode = ("b" if blur else "") + ("g" if greyscale else "")
    out = cache_dir / f"{sha256}-{mode}.jpg"
    if out.exists():
        return out
    private_dir(cache_dir)
    with Image.open(asset_path) as img:
        img.thumbnail((640, 640))
        im = img.convert("RGB")
        if greyscale:
            im = ImageOps.grayscale(im).convert("RGB")
        if blur:
            im = im.filter(ImageFilter.GaussianBlur(radius=max(8, max(im.size) // 24)))
        tmp = out.with_suffix(".tmp")
        im.save(tmp, format="JPEG", quality=80)
        private_file(tmp)  # a copy of harmful content: for the owner only
        tmp.replace(out)
    return out

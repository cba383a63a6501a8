"""Contact sheets: rows of captioned thumbnails in one PNG, for looking at images by eye (the audit's groups
and pairs, prediction heat maps)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bcmodels.io.files import atomic_path
from bcmodels.io.images import decode, to_rgb

LINE = 14  # pixels per caption line of Pillow's built-in font
Cell = tuple[Path | Image.Image, str]  # an image file (decoded by the project's rules) or image, and its caption


def contact_sheet(rows: Sequence[Sequence[Cell]], path: Path, title: str, thumb: int = 160) -> None:
    """A PNG with one row of thumbnails per entry of rows, each caption right under its own thumbnail.

    Drawn with Pillow's built-in font and saved without metadata, so the same input gives the same bytes.
    """
    font = ImageFont.load_default()
    caption_lines = max((caption.count("\n") + 1 for row in rows for _, caption in row), default=1)
    cell_w, cell_h = thumb + 10, thumb + 12 + LINE * caption_lines
    columns = max((len(row) for row in rows), default=1)
    title_lines = title.count("\n") + 1
    top = LINE * title_lines + 10
    sheet = Image.new("RGB", (max(cell_w * columns, 480), top + cell_h * max(len(rows), 1)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.multiline_text((5, 4), title if rows else f"{title}: none", fill="black", font=font, spacing=2)
    for r, row in enumerate(rows):
        y = top + r * cell_h
        if r:
            draw.line([(0, y - 4), (sheet.width, y - 4)], fill=(200, 200, 200))  # rows apart at a glance
        for c, (source, caption) in enumerate(row):
            image = source.convert("RGB") if isinstance(source, Image.Image) else to_rgb(decode(source))
            image.thumbnail((thumb, thumb))
            x = c * cell_w + 5
            sheet.paste(image, (x, y))
            draw.multiline_text((x, y + image.height + 3), caption, fill="black", font=font, spacing=2)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")

"""A small PDF writer for the reports: A4 pages of text (the standard Helvetica fonts) and filled
rectangles, which is all a table and a bar chart need, with no rendering engine to install.

PDF 1.4 (ISO 32000-1): one content stream per page, the base-14 fonts with WinAnsiEncoding (text
outside Latin-1 is replaced), coordinates in points from the bottom left. The cross-reference
table is written with each object's byte offset, so readers need not rebuild it.
"""

from dataclasses import dataclass, field
from typing import Final

A4_WIDTH: Final = 595.0
A4_HEIGHT: Final = 842.0
Colour = tuple[float, float, float]
BLACK: Final[Colour] = (0.0, 0.0, 0.0)
# Average Helvetica glyph width as a share of the size: enough to place and clip text.
_CHAR_WIDTH: Final = 0.52


def _escape(text: str) -> str:
    latin = text.encode("latin-1", "replace").decode("latin-1")
    return latin.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_width(text: str, size: float) -> float:
    """An estimate of the width ``text`` takes at ``size`` (for right-aligning and bars)."""
    return len(text) * size * _CHAR_WIDTH


@dataclass
class Page:
    """One page's drawing operations, in PDF content-stream syntax."""

    ops: list[str] = field(default_factory=list)

    def text(
        self,
        x: float,
        y: float,
        text: str,
        *,
        size: float = 10,
        bold: bool = False,
        colour: Colour = BLACK,
    ) -> None:
        font = "F2" if bold else "F1"
        r, g, b = colour
        self.ops.append(
            f"BT /{font} {size:.1f} Tf {r:.3f} {g:.3f} {b:.3f} rg {x:.2f} {y:.2f} Td "
            f"({_escape(text)}) Tj ET"
        )

    def rect(self, x: float, y: float, width: float, height: float, colour: Colour) -> None:
        r, g, b = colour
        self.ops.append(f"{r:.3f} {g:.3f} {b:.3f} rg {x:.2f} {y:.2f} {width:.2f} {height:.2f} re f")


@dataclass
class Document:
    """Pages, then :meth:`render` to the bytes of a PDF file."""

    title: str
    pages: list[Page] = field(default_factory=list)

    def new_page(self) -> Page:
        page = Page()
        self.pages.append(page)
        return page

    def render(self) -> bytes:
        # Objects: 1 catalog, 2 pages, 3 Helvetica, 4 Helvetica-Bold, 5 info, then per page
        # its page object and its content stream.
        objects: list[bytes] = []
        kids = " ".join(f"{6 + 2 * i} 0 R" for i in range(len(self.pages)))
        objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
        objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(self.pages)} >>".encode())
        for base in ("Helvetica", "Helvetica-Bold"):
            objects.append(
                f"<< /Type /Font /Subtype /Type1 /BaseFont /{base} "
                "/Encoding /WinAnsiEncoding >>".encode()
            )
        objects.append(f"<< /Title ({_escape(self.title)}) /Producer (cybermission) >>".encode())
        for index, page in enumerate(self.pages):
            content = "\n".join(page.ops).encode("latin-1")
            objects.append(
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {A4_WIDTH:.0f} {A4_HEIGHT:.0f}] "
                f"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> "
                f"/Contents {7 + 2 * index} 0 R >>".encode()
            )
            objects.append(
                f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream"
            )
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(len(out))
            out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
        xref = len(out)
        out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
        for offset in offsets:
            out += f"{offset:010d} 00000 n \n".encode()
        out += (
            f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 5 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n"
        ).encode()
        return bytes(out)

"""Build static/icons/sprite.svg from the Lucide icons the app uses (vendored, see
static/VENDORED.md). Run from the repository root with the unpacked npm package:

    cd /tmp && npm pack lucide-static@1.62.0 && tar xzf lucide-static-1.62.0.tgz
    python3 tools/make_sprite.py /tmp/package

Each icon becomes a <symbol id="i-NAME"> used as <svg><use href="/static/icons/sprite.svg#i-NAME">
(an external sprite: no inline script or style, nothing for the CSP to allow).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ICONS = [
    "book-open",  # Journal
    "pen-line",  # Write
    "chart-line",  # Progress
    "users",  # Supporters
    "life-buoy",  # Need help now?
    "user-round",  # Account
    "log-out",
    "search",
    "lock",
    "share-2",
    "eye",
    "check",
    "plus",
    "calendar",
    "house",
    "clipboard-list",
    "shield-alert",
    "flag",
    "message-square",
    "list-checks",
    "bell",
    "mail",
    "smartphone",
    "arrow-left",
    "chevron-down",
    "x",
    "frown",
    "annoyed",
    "meh",
    "smile",
    "laugh",
    "sparkles",
    "heart-handshake",
    "phone",
    "mic",
    "car",
    "download",
    "trash-2",
    "upload",  # Import a journal
]
_BODY = re.compile(r"<svg[^>]*>(.*)</svg>", re.S)
# On each symbol: a <use> clones the symbol, not the sprite's root, so nothing is inherited.
_STROKE = (
    ' fill="none" stroke="currentColor" stroke-width="1.75" stroke-linecap="round"'
    ' stroke-linejoin="round"'
)


def symbol(package: Path, name: str) -> str:
    text = (package / "icons" / f"{name}.svg").read_text()
    body = " ".join(line.strip() for line in _BODY.search(text).group(1).splitlines() if line)
    return f'<symbol id="i-{name}" viewBox="0 0 24 24"{_STROKE}>{body}</symbol>'


def main() -> None:
    package = Path(sys.argv[1])
    version = re.search(r'"version":\s*"([^"]+)"', (package / "package.json").read_text())
    symbols = "\n".join(symbol(package, name) for name in ICONS)
    out = Path("static/icons/sprite.svg")
    out.write_text(
        f"<!-- Lucide icons v{version.group(1)} (ISC licence, static/icons/LUCIDE-LICENSE), "
        "built by tools/make_sprite.py -->\n"
        '<svg xmlns="http://www.w3.org/2000/svg">\n'
        f"{symbols}\n</svg>\n"
    )
    (Path("static/icons/LUCIDE-LICENSE")).write_text((package / "LICENSE").read_text())
    print(f"{out}: {len(ICONS)} icons, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()

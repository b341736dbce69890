"""Example photos for the demo page's "try an example" and the README walk-through.

Plain files read with the standard library, so the API can serve them without importing
torch, scikit-image or scipy. They are byte-for-byte copies of scikit-image's bundled sample
data (the SHA-256 of each matches scikit-image's registry); licences are in README.md here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.errors import NotFoundError

DIRECTORY = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Example:
    """One example photo, where it comes from, and what an ImageNet model should see in it."""

    name: str
    filename: str
    media_type: str
    title: str
    credit: str
    licence: str
    sha256: str
    expected: str  # what efficientnet_lite0 labels it (top classes), for the page and the docs

    @property
    def path(self) -> Path:
        return DIRECTORY / self.filename

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in (
        Example(
            name="chelsea",
            filename="chelsea.png",
            media_type="image/png",
            title="Chelsea the cat",
            credit="Stefan van der Walt",
            licence="CC0 1.0",
            sha256="596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
            expected="tabby / Egyptian cat / tiger cat",
        ),
        Example(
            name="coffee",
            filename="coffee.png",
            media_type="image/png",
            title="A cup of coffee (courtesy of Pikolo Espresso Bar)",
            credit="Rachel Michetti",
            licence="CC0 1.0",
            sha256="cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
            expected="espresso",
        ),
        Example(
            name="rocket",
            filename="rocket.jpg",
            media_type="image/jpeg",
            title="Falcon 9 launching DSCOVR",
            credit="SpaceX",
            licence="Public domain",
            sha256="c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
            expected="missile / projectile",
        ),
    )
}


def get_example(name: str) -> Example:
    """The example called `name`, or a `NotFoundError` (404) listing the known ones."""
    try:
        return EXAMPLES[name]
    except KeyError:
        raise NotFoundError(f"no example {name!r}; known: {sorted(EXAMPLES)}") from None

"""Import an unpacked FiftyOne export (`saliency export JOB --format fiftyone --out DIR`) with
FiftyOne itself, and check what came in. Needs FiftyOne's database: MongoDB, which FiftyOne
starts on its own (the `fiftyone-db` package) or finds at `FIFTYONE_DATABASE_URI`.

    make export-check DIR=out/fo      # or: python tools/fiftyone_import.py out/fo

It imports the folder into a new, non-persistent dataset with `Dataset.from_dir(...,
dataset_type=fiftyone.types.FiftyOneDataset)`, checks that every sample of `samples.json`
arrived, that every field of `metadata.json` is in the dataset's schema and that every
heatmap's PNG reads back as 16-bit pixels, prints a line per field, and deletes the dataset.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folder: Path) -> int:
    import fiftyone as fo

    samples = json.loads((folder / "samples.json").read_text())["samples"]
    declared = [f["name"] for f in json.loads((folder / "metadata.json").read_text())
                ["sample_fields"]]
    dataset = fo.Dataset.from_dir(str(folder), dataset_type=fo.types.FiftyOneDataset)
    try:
        schema = dataset.get_field_schema()
        missing = [name for name in declared if name not in schema and name != "id"]
        if len(dataset) != len(samples) or missing:
            print(f"imported {len(dataset)} of {len(samples)} samples; fields missing from "
                  f"the schema: {missing}", file=sys.stderr)
            return 1
        heatmaps = [name for name, field in schema.items()
                    if getattr(field, "document_type", None) is fo.Heatmap]
        for name in heatmaps:
            for sample in dataset.exists(name):
                pixels = sample[name].get_map()
                if pixels is None or pixels.dtype.name != "uint16":
                    print(f"sample {sample.index}: {name}'s map did not read as 16-bit pixels",
                          file=sys.stderr)
                    return 1
        print(f"imported {len(dataset)} samples, {len(schema)} fields, heatmaps: "
              f"{', '.join(heatmaps) or 'none'}")
        for name, field in schema.items():
            print(f"  {name}: {type(field).__name__}")
    finally:
        dataset.delete()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1], "metadata.json").is_file():
        sys.exit("usage: python tools/fiftyone_import.py DIR  (an unpacked fiftyone export)")
    sys.exit(main(Path(sys.argv[1])))

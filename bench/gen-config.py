#!/usr/bin/env python3
# Writes the mirrorplan configuration of the plan-at-scale benchmark: one
# image_set over a bundle and NODES `local:` nodes spread over CLUSTERS
# clusters.
#
#   gen-config.py OUT_DIR BUNDLE NODES CLUSTERS [--depends-on]
#
# With --depends-on every cluster depends on the image set, so each node
# instance depends on every image instance (NODES x IMAGES edges).
import sys
from pathlib import Path


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    depends_on = "--depends-on" in sys.argv[1:]
    if len(args) != 4:
        print(__doc__ or "usage: gen-config.py OUT_DIR BUNDLE NODES CLUSTERS [--depends-on]",
              file=sys.stderr)
        return 2
    out, bundle, nodes, clusters = Path(args[0]), args[1], int(args[2]), int(args[3])
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        'registry "store" {\n  endpoint  = "oci:./store"\n  namespace = "mirror"\n}\n',
        'registry "mirror" {\n  endpoint  = "https://mirror.example:5000"\n  namespace = "mirror"\n}\n',
        f'image_set "bundle" {{\n  registry = registry.store\n  bundle   = "{bundle}"\n}}\n',
    ]
    per = -(-nodes // clusters)
    for c in range(clusters):
        members = [f'"local:./nodes/c{c}/n{i}"' for i in range(c * per, min(nodes, (c + 1) * per))]
        if not members:
            break
        block = f'cluster "c{c}" {{\n  nodes = [\n    ' + ",\n    ".join(members) + "\n  ]\n"
        block += '  registry_mirror {\n    registry = registry.mirror\n'
        block += '    hosts    = ["quay.io", "docker.io"]\n  }\n'
        if depends_on:
            block += "  depends_on = [image_set.bundle]\n"
        block += "}\n"
        parts.append(block)
    (out / "main.hcl").write_text("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

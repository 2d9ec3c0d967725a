#!/usr/bin/env python3
# Writes the push benchmark's bundle as an OCI image layout DIRECTORY (the
# caller tars and compresses it): random, incompressible layer data.
#
#   gen_bundle.py OUT_DIR [--scale 1.0] [--images 22] [--big-mib 256] [--seed 1]
#                 [--order-file PATH] [--order recommended|name|reverse]
#
# Default content (~1 GiB of blobs):
#   * 4 base layers shared by every image (32 + 16 + 8 + 4 MiB),
#   * 22 images with two own layers each (16 MiB + 8 MiB),
#   * image "big" with one 256 MiB layer on top of the base (--big-mib N:
#     exactly N MiB, whatever the scale),
#   * image "multi", a two-platform index (linux/amd64 + linux/arm64), each
#     platform with its own 12 MiB layer.
# Names in index.json are full upstream names (`org.opencontainers.image.ref.name`),
# so both mirrorplan and `skopeo copy oci:DIR:NAME` find them.
# --order-file writes the recommended packing order, one path per line
# (relative to OUT_DIR): `oci-layout`, `index.json`, the blobs of at most
# 1 MiB smallest first, so that a reader finds the index and all manifests
# and configs at the head of the archive, then the bigger blobs largest
# first (`tar --no-recursion -C OUT_DIR -T PATH`). --order name writes the
# order of a plain `tar --sort=name -cf - blobs index.json oci-layout` of the
# layout (blobs/ by digest, then index.json, then oci-layout: the catalogue
# is at the end), --order reverse the same list backwards (oci-layout,
# index.json, then the blobs by digest descending).
# Layers are single-file (uncompressed) tars whose payload comes from a
# seeded PRNG (not /dev/urandom, so reruns are reproducible). Prints one line
# per image: NAME DIGEST.
import argparse
import hashlib
import json
import os
import random
import tarfile

MIB = 1024 * 1024
LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


class Layout:
    def __init__(self, root):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)

    def put(self, data, media_type):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobs, d), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + d, "size": len(data)}


def layer(layout, rng, size, label):
    """A tar with one file of `size` random bytes, streamed to disk in 8 MiB
    chunks (so the 256 MiB layer needs little memory)."""
    info = tarfile.TarInfo(name=f"data/{label}.bin")
    info.size = size
    info.mtime = 1577836800
    h_raw = hashlib.sha256()
    tmp = os.path.join(layout.blobs, ".partial")
    total = 0
    with open(tmp, "wb") as f:
        def out(b):
            nonlocal total
            h_raw.update(b)
            f.write(b)
            total += len(b)
        out(info.tobuf(format=tarfile.USTAR_FORMAT))
        left = size
        while left:
            n = min(left, 8 * MIB)
            out(rng.randbytes(n))
            left -= n
        out(b"\0" * ((512 - size % 512) % 512))
        out(b"\0" * 1024)
    d = h_raw.hexdigest()
    os.rename(tmp, os.path.join(layout.blobs, d))
    desc = {"mediaType": LAYER, "digest": "sha256:" + d, "size": total}
    return desc, "sha256:" + d


def image(layout, layers, arch, label):
    cfg = {
        "architecture": arch,
        "os": "linux",
        "config": {"Labels": {"bench": label}},
        "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
    }
    cdesc = layout.put(json.dumps(cfg, sort_keys=True).encode(), CONFIG)
    m = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": cdesc,
        "layers": [d for d, _ in layers],
    }
    return layout.put(json.dumps(m, sort_keys=True).encode(), MANIFEST)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every layer size")
    p.add_argument("--images", type=int, default=22)
    p.add_argument("--big-mib", type=int, default=None,
                   help="size of the big layer in MiB, not scaled (default: 256, scaled)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--order-file", help="write the tar member order here")
    p.add_argument("--order", choices=["recommended", "name", "reverse"], default="recommended",
                   help="which member order --order-file gets")
    a = p.parse_args()
    rng = random.Random(a.seed)
    sz = lambda mib: max(512, int(mib * MIB * a.scale))
    lay = Layout(a.out)
    with open(os.path.join(a.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    base = [layer(lay, rng, sz(m), f"base-{i}") for i, m in enumerate([32, 16, 8, 4])]
    entries = []

    def add(name, desc):
        d = dict(desc)
        d["annotations"] = {"org.opencontainers.image.ref.name": name}
        entries.append(d)
        print(name, desc["digest"])

    for i in range(a.images):
        own = [layer(lay, rng, sz(16), f"app-{i}-a"), layer(lay, rng, sz(8), f"app-{i}-b")]
        add(f"gcr.io/bench/app-{i:02d}:1.{i}", image(lay, base + own, "amd64", f"app-{i}"))
    if a.big_mib is not None:
        big_size = a.big_mib * MIB
    else:
        big_size = 256 * MIB if a.scale >= 1 else sz(256)
    big = [layer(lay, rng, big_size, "big")]
    add("quay.io/bench/big:1.0", image(lay, base + big, "amd64", "big"))
    children = []
    for arch in ["amd64", "arm64"]:
        m = image(lay, base + [layer(lay, rng, sz(12), f"multi-{arch}")], arch, f"multi-{arch}")
        m["platform"] = {"architecture": arch, "os": "linux"}
        children.append(m)
    idx = {"schemaVersion": 2, "mediaType": INDEX, "manifests": children}
    add("docker.io/library/multi:2.0", lay.put(json.dumps(idx, sort_keys=True).encode(), INDEX))
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}, f)
    if a.order_file:
        sized = [(os.path.getsize(os.path.join(lay.blobs, n)), n) for n in os.listdir(lay.blobs)]
        small = sorted(b for b in sized if b[0] <= 1 << 20)
        big = sorted((b for b in sized if b[0] > 1 << 20), key=lambda b: (-b[0], b[1]))
        if a.order == "recommended":
            paths = ["oci-layout", "index.json"] + [f"blobs/sha256/{n}" for _, n in small + big]
        else:
            paths = ["blobs", "blobs/sha256"] + [f"blobs/sha256/{n}" for _, n in sorted(sized, key=lambda b: b[1])]
            paths += ["index.json", "oci-layout"]
            if a.order == "reverse":
                paths.reverse()
        with open(a.order_file, "w") as f:
            for path in paths:
                f.write(path + "\n")


if __name__ == "__main__":
    main()

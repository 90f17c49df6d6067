"""Entropy coding benchmark: this project's Huffman against dahuffman, zstd and fixed-width packing.

Run: PYTHONPATH=. python benchmarks/bench_coding.py [--quick | --smoke]
(--quick: 250,000-symbol streams; --smoke: 20,000, only to check that it runs.) The last lines, "summary",
give the ranges README quotes: our Huffman's encode and decode speed over dahuffman's and its size beside
dahuffman's and zstd -19's on every stream compared.
Streams: 4-bit k-means-like indices of 2.5M weights (linear codebook over Laplace weights, as Deep
Compression initializes it), the position gaps of a 90%-pruned 2.5M tensor, and a 25M-symbol stream
(ResNet-50 size) for throughput. Sizes are in bytes; "x base" columns are ratios against the named
baseline (dahuffman for time, the Shannon bound for size).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import zstandard
from dahuffman import HuffmanCodec

from compression_core.coding import huffman, positions, raw
from compression_core.format import decode_records, encode_records
from compression_core.records import TensorRecord

SUMMARY: list[dict[str, float]] = []  # one entry per compared stream (see `summary`)


def timed(fn, *args, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return out, best


def kmeans_indices(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.laplace(scale=0.02, size=n)
    centers = np.linspace(w.min(), w.max(), k)
    return (
        np.abs(w[:, None] - centers[None, :]).argmin(axis=1)
        if n <= 3_000_000
        else np.clip(np.round((w - centers[0]) / (centers[1] - centers[0])), 0, k - 1).astype(np.int64)
    )


def pruned_gap_symbols(n: int, density: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    p = np.flatnonzero(rng.random(n) < density)
    coded = positions.encode(p, n, "huffman")
    return coded.symbols, coded.width


def compare(name: str, s: np.ndarray, width: int, with_dahuffman: bool) -> None:
    n = s.size
    bound = huffman.entropy_bits(s) / 8
    ours, t_enc = timed(huffman.encode, s, repeat=3)
    back, t_dec = timed(lambda d: huffman.decode(d, max_count=n), ours, repeat=3)
    assert np.array_equal(back, s)
    dtype = np.uint8 if int(s.max()) < 256 else np.uint16
    as_bytes = s.astype(dtype).tobytes()
    zstd, t_zenc = timed(zstandard.ZstdCompressor(level=19).compress, as_bytes)
    _, t_zdec = timed(zstandard.ZstdDecompressor().decompress, zstd)
    packed, t_renc = timed(raw.encode, s, width)
    _, t_rdec = timed(raw.decode, packed, n, width)
    print(f"\n== {name}: {n:,} symbols, alphabet {int(s.max()) + 1}, entropy bound {bound:,.0f} bytes")
    print(
        f"{'coder':<28}{'bytes':>12}{'x bound':>9}{'encode s':>10}{'decode s':>10}{'enc x base':>11}"
        f"{'dec x base':>11}"
    )
    rows = []
    if with_dahuffman:
        items = s.tolist()
        (codec, da_bytes), t_da_enc = timed(lambda: (c := HuffmanCodec.from_data(items), c.encode(items)))
        da_back, t_da_dec = timed(codec.decode, da_bytes)
        assert da_back == items
        rows.append(("dahuffman (baseline)", len(da_bytes), t_da_enc, t_da_dec))
        base_enc, base_dec = t_da_enc, t_da_dec
    else:
        base_enc = base_dec = float("nan")
    rows.append(("ours: canonical Huffman", len(ours), t_enc, t_dec))
    SUMMARY.append(
        {
            "enc": base_enc / t_enc,
            "dec": base_dec / t_dec,
            "size_vs_dahuffman": len(ours) / rows[0][1] if with_dahuffman else float("nan"),
            "size_vs_zstd": len(ours) / len(zstd),
        }
    )
    rows.append((f"zstd -19 of {np.dtype(dtype).name} bytes", len(zstd), t_zenc, t_zdec))
    rows.append((f"raw fixed width ({width} bits)", len(packed), t_renc, t_rdec))
    for label, size, te, td in rows:
        print(
            f"{label:<28}{size:>12,}{size / bound:>9.3f}{te:>10.3f}{td:>10.3f}{base_enc / te:>11.1f}"
            f"{base_dec / td:>11.1f}"
        )
    print("(dahuffman stores no code table in its bytes; ours includes table and sync points)")


def model_roundtrip(n: int, rng: np.random.Generator) -> None:
    """encode_records/decode_records on a 90%-pruned, 4-bit-shared tensor of n weights."""
    pos = np.flatnonzero(rng.random(n) < 0.1)
    idx = kmeans_indices(pos.size, 16, rng)
    rec = TensorRecord(
        "w",
        (n,),
        torch.float32,
        positions=torch.from_numpy(pos),
        codebook=torch.randn(16),
        indices=torch.from_numpy(idx),
    )
    model, t_enc = timed(encode_records, [rec])
    (back, _), t_dec = timed(decode_records, model.data)
    assert torch.equal(back[0].reconstruct(), rec.reconstruct())
    dense = 4 * n
    print(f"\n== container: {n:,}-weight tensor, 90% pruned + 16-entry codebook")
    print(
        f"size {len(model.data):,} bytes = {dense / len(model.data):.1f}x smaller than float32 "
        f"({8 * len(model.data) / pos.size:.2f} bits per kept weight); "
        f"encode {t_enc:.2f}s, decode {t_dec:.2f}s"
    )
    for s in model.streams["w"]:
        ent = f"{s.entropy_bits / 8:,.0f}" if s.entropy_bits is not None else "-"
        print(
            f"  {s.kind:<10}{s.coding:>8}{s.layout:>8}{s.count:>12,} symbols{s.bits // 8:>12,} bytes"
            f"  bound {ent}"
        )


def density_table(n: int, rng: np.random.Generator) -> None:
    print(f"\n== position coding by density ({n:,} entries): bits per entry, chosen layout")
    print(
        f"{'density':>8}{'H(d) bound':>12}{'chosen':>10}{'layout':>8}{'coding':>9}{'gaps huff':>11}"
        f"{'bitmap huff':>12}"
    )
    for d in (0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9):
        p = np.flatnonzero(rng.random(n) < d)
        chosen = positions.encode(p, n, "huffman")
        values, counts = positions.gap_histogram(p)
        width = positions._best_gap_width(values, counts, "huffman")
        total = positions._symbol_count(values, counts, width)
        gaps = positions._gap_symbols(p, width, total).astype(np.int64)
        bitmap = np.packbits(np.isin(np.arange(n), p)).astype(np.int64)
        h = -(d * np.log2(d) + (1 - d) * np.log2(1 - d))
        print(
            f"{d:>8.2f}{h:>12.3f}{8 * len(chosen.data) / n:>10.3f}{chosen.layout:>8}{chosen.coding:>9}"
            f"{8 * len(huffman.encode(gaps)) / n:>11.3f}{8 * len(huffman.encode(bitmap)) / n:>12.3f}"
        )


def resnet50_roundtrip(rng: np.random.Generator, arch: str = "resnet50") -> None:
    """Every torchvision ResNet-50 weight 90% pruned + 4-bit shared, biases and BN dense: 320 tensors."""
    import torchvision

    records = []
    for name, t in getattr(torchvision.models, arch)().state_dict().items():
        if t.dim() >= 2:
            pos = np.flatnonzero(rng.random(t.numel()) < 0.1)
            idx = kmeans_indices(pos.size, 16, rng)
            records.append(
                TensorRecord(
                    name,
                    tuple(t.shape),
                    torch.float32,
                    positions=torch.from_numpy(pos),
                    codebook=torch.randn(16),
                    indices=torch.from_numpy(idx),
                )
            )
        else:
            records.append(TensorRecord(name, tuple(t.shape), t.dtype, values=t.reshape(-1).clone()))
    model, t_enc = timed(encode_records, records)
    (back, _), t_dec = timed(decode_records, model.data)
    assert all(torch.equal(a.reconstruct(), b.reconstruct()) for a, b in zip(records, back, strict=True))
    print(f"\n== container: {arch} shapes, {len(records)} tensors, convs/fc 90% pruned + 16-entry codebooks")
    print(
        f"size {len(model.data):,} bytes; encode {t_enc:.2f}s, decode {t_dec:.2f}s "
        "(all Huffman streams of the file decode in one batched lockstep pass)"
    )


def summary() -> None:
    with_da = [s for s in SUMMARY if not np.isnan(s["enc"])]
    enc, dec = [s["enc"] for s in with_da], [s["dec"] for s in with_da]
    size = [s["size_vs_dahuffman"] for s in with_da]
    beats_zstd = sum(s["size_vs_zstd"] < 1 for s in SUMMARY)
    print(
        f"\nsummary: against dahuffman on {len(with_da)} streams our Huffman encodes {min(enc):.1f}-"
        f"{max(enc):.1f}x and decodes {min(dec):.1f}-{max(dec):.1f}x faster, at "
        f"{min(size):.3f}-{max(size):.3f}x dahuffman's size (ours includes its code table); "
        f"smaller than zstd -19 on {beats_zstd} of {len(SUMMARY)} streams"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller streams, no dahuffman on the big one")
    ap.add_argument("--smoke", action="store_true", help="smallest size: 20,000-symbol streams")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = 20_000 if args.smoke else 250_000 if args.quick else 2_500_000
    compare("4-bit k-means indices", kmeans_indices(n, 16, rng), 4, True)
    gaps, w = pruned_gap_symbols(n, 0.1, rng)
    compare(f"gap stream of a 90%-pruned tensor (w={w})", gaps, w, True)
    big = 50_000 if args.smoke else 2_500_000 if args.quick else 25_000_000
    compare("ResNet-50-size stream, 4-bit indices", kmeans_indices(big, 16, rng), 4, False)
    density_table(20_000 if args.smoke else 200_000, rng)
    model_roundtrip(big, rng)
    resnet50_roundtrip(rng, "squeezenet1_1" if args.smoke else "resnet50")
    summary()


if __name__ == "__main__":
    main()

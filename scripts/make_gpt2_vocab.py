"""Derive GPT-2's ``vocab.json`` and ``merges.txt`` from the tiktoken ranks file.

Why this script exists: gpt2kit ships the GPT-2 tokenizer files inside the package so
that ``GPT2Tokenizer.from_pretrained("gpt2")`` works offline, and we want those files to
be reproducible from a public, pip-installable source rather than copied by hand.
The ``openai-whisper`` sdist carries ``whisper/assets/gpt2.tiktoken``: one line per
token, ``<base64 token bytes> <rank>``, 50256 lines, where the rank equals the GPT-2 id.

From the ranks we rebuild the two standard files, byte for byte as OpenAI
(``encoder.json`` / ``vocab.bpe``) and Hugging Face (``vocab.json`` / ``merges.txt``)
publish them:

* ``vocab.json``: ``json.dumps`` of ``{byte-level-unicode token: id}`` in id order
  (default separators, ASCII escapes, no trailing newline), 50257 entries including
  ``<|endoftext|>`` = 50256.
* ``merges.txt``: ``#version: 0.2`` then the 50000 merges in rank order, one
  ``"left right"`` pair per line, every line newline-terminated.

A token of rank ``r`` (``r >= 256``) was created by merge number ``r - 256``. To recover
the pair we run byte-level BPE on the token's bytes using only ranks ``< r``; BPE must
stop at exactly two parts, which are the merged pair.

Usage::

    pip download --no-deps openai-whisper -d /tmp/whisper   # do not install it
    tar xzf /tmp/whisper/openai_whisper-*.tar.gz -C /tmp/whisper
    python scripts/make_gpt2_vocab.py /tmp/whisper/openai_whisper-*/whisper/assets/gpt2.tiktoken \\
        src/gpt2kit/assets/gpt2
    python scripts/make_gpt2_vocab.py --check <gpt2.tiktoken> src/gpt2kit/assets/gpt2
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path

EOT = "<|endoftext|>"
EOT_ID = 50256
N_RANKS = 50256
N_MERGES = 50000
MERGES_HEADER = "#version: 0.2"


def bytes_to_unicode() -> dict[int, str]:
    """Return GPT-2's reversible map from byte value to a printable unicode character.

    Printable Latin-1 bytes map to themselves; the remaining 68 bytes map to
    ``chr(256 + n)`` in byte order. This is the exact table from OpenAI's ``encoder.py``.

    Example:
        >>> bytes_to_unicode()[ord(" ")]
        'Ġ'
    """
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def load_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    """Read a ``.tiktoken`` file into ``{token bytes: rank}``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.tiktoken"
        >>> _ = p.write_text("IQ== 0\\n")
        >>> load_tiktoken_ranks(p)
        {b'!': 0}
    """
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
        if not line.strip():
            continue
        token_b64, rank = line.split()
        token = base64.b64decode(token_b64)
        if token in ranks:
            raise ValueError(f"{path}:{lineno}: duplicate token {token!r}")
        ranks[token] = int(rank)
    return ranks


def bpe_split(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """Run byte-level BPE on ``token`` using only ranks ``< max_rank``.

    This is tiktoken's merge rule: repeatedly merge the adjacent pair whose
    concatenation has the lowest rank, until no allowed merge remains.

    Example:
        >>> bpe_split({b"a": 0, b"b": 1, b"ab": 2}, b"ab", max_rank=2)
        [b'a', b'b']
    """
    parts = [bytes([b]) for b in token]
    while True:
        best_i = -1
        best_rank = max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best_i, best_rank = i, rank
        if best_i < 0:
            return parts
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]


def derive(ranks: dict[bytes, int]) -> tuple[str, str]:
    """Derive ``(vocab_json_text, merges_txt_text)`` from GPT-2's tiktoken ranks.

    Raises:
        ValueError: if the ranks are not GPT-2's shape (256 single bytes in
            ``bytes_to_unicode`` order, contiguous ranks) or a token does not split
            into exactly two known tokens.

    Example:
        >>> vocab_text, merges_text = derive(load_tiktoken_ranks(Path("gpt2.tiktoken")))  # doctest: +SKIP
    """
    if len(ranks) != N_RANKS:
        raise ValueError(f"expected {N_RANKS} ranks, got {len(ranks)}")
    by_rank: list[bytes] = [b""] * N_RANKS
    for token, rank in ranks.items():
        if not 0 <= rank < N_RANKS or by_rank[rank]:
            raise ValueError(f"bad or duplicate rank {rank} for {token!r}")
        by_rank[rank] = token

    b2u = bytes_to_unicode()
    # GPT-2 ids 0..255 are the single bytes in bytes_to_unicode() order.
    for rank, byte in enumerate(b2u):
        if by_rank[rank] != bytes([byte]):
            raise ValueError(f"rank {rank} is {by_rank[rank]!r}, expected {bytes([byte])!r}")

    def to_unicode(token: bytes) -> str:
        return "".join(b2u[b] for b in token)

    vocab = {to_unicode(token): rank for rank, token in enumerate(by_rank)}
    vocab[EOT] = EOT_ID
    if len(vocab) != N_RANKS + 1:
        raise ValueError("byte-level unicode strings collide; vocab would lose entries")

    merges: list[str] = []
    for rank in range(256, N_RANKS):
        token = by_rank[rank]
        parts = bpe_split(ranks, token, max_rank=rank)
        if len(parts) != 2:
            raise ValueError(f"rank {rank} {token!r}: BPE below its rank gives {parts!r}")
        merges.append(f"{to_unicode(parts[0])} {to_unicode(parts[1])}")
    assert len(merges) == N_MERGES

    vocab_text = json.dumps(vocab)  # OpenAI's encoder.json: default separators, ASCII escapes
    merges_text = "\n".join([MERGES_HEADER, *merges]) + "\n"
    return vocab_text, merges_text


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns a process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tiktoken_file", type=Path, help="path to whisper's gpt2.tiktoken")
    parser.add_argument("out_dir", type=Path, help="folder for vocab.json and merges.txt")
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 unless the files in out_dir equal the derived ones",
    )
    args = parser.parse_args(argv)

    vocab_text, merges_text = derive(load_tiktoken_ranks(args.tiktoken_file))
    outputs = {"vocab.json": vocab_text.encode("utf-8"), "merges.txt": merges_text.encode("utf-8")}

    if args.check:
        ok = True
        for name, data in outputs.items():
            path = args.out_dir / name
            if not path.is_file():
                print(f"MISSING {path}", file=sys.stderr)
                ok = False
                continue
            shipped = path.read_bytes()
            if shipped != data:
                print(
                    f"DIFFERS {path}: shipped sha256 {_sha(shipped)} ({len(shipped)} bytes), "
                    f"derived {_sha(data)} ({len(data)} bytes)",
                    file=sys.stderr,
                )
                ok = False
            else:
                print(f"OK      {path} sha256 {_sha(data)} ({len(data)} bytes)")
        return 0 if ok else 1

    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in outputs.items():
        (args.out_dir / name).write_bytes(data)
        print(f"wrote {args.out_dir / name} sha256 {_sha(data)} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m bench.search_bench --backend sqlite|cassandra``: search query times on a full index.

Fills the index through ``add`` (batches of 1,000) with ``--messages`` messages over
``--conversations`` conversations, sent over the last 60 days in time order: 3 to 25 words each,
drawn with a Zipf law (s = 1.1) from a vocabulary whose top ranks are common English words and
whose tail is made-up words from syllables, with a few accented and non-Latin ones. Then, for a
user who can read ``--small`` and then ``--large`` random conversations, it runs ``--queries``
searches of each kind (a common word, a middling one, a rare one, two words, a two-letter
prefix) and reports p50 / p99 / max of the time of one ``search`` call (limit 20), and how many
hits the pages held. For SQLite it also runs each kind with the other way of scoping (scope terms
in the FTS query, or filtering while walking), which sets ``SCOPE_TERMS_MAX``.

SQLite: the file ``--path`` (kept, and reused when it already holds the messages). Cassandra:
the node named by ``--hosts``, or a local one from ``infra.cassandra`` in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from projections.search import SearchDoc, SearchIndex

RETENTION_MS = 90 * 86_400_000
DAY_MS = 86_400_000
COMMON = (
    "the be to of and a in that have i it for not on with he as you do at this but his by from they we say"
    " her she or an will my one all would there their what so up out if about who get which go me when make"
    " can like time no just him know take people into year your good some could them see other than then now"
    " look only come its over think also back after use two how our work first well way even new want because"
    " any these give day most us meeting lunch tomorrow today tonight office project deadline release deploy"
    " coffee call review budget client weekend holiday train flight hotel dinner birthday party photo video"
    " report draft slides invoice contract server database bug fix test build merge branch ticket sprint"
).split()
EXTRA = ("café", "naïve", "straße", "über", "größe", "déjà", "ﬁle", "İstanbul", "東京", "москва", "привет", "日本")
SYLLABLES = ("ka ri to mo sa ne lu vi da pe zo qui tra bel con fen gor hal jin kel mar nor pol ras sin tum ver wal"
             " xan yor zel bra cri dro fla gle plo stu").split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.search_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "cassandra"), required=True)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--conversations", type=int, default=10_000)
    p.add_argument("--vocabulary", type=int, default=50_000)
    p.add_argument("--small", type=int, default=50, help="conversations of the first user (default 50)")
    p.add_argument("--large", type=int, default=1_000, help="conversations of the second user (default 1000)")
    p.add_argument("--queries", type=int, default=100, help="searches of each kind and scope (default 100)")
    p.add_argument("--path", default=str(Path(tempfile.gettempdir()) / "search-bench" / "search.sqlite3"))
    p.add_argument("--hosts", default="", help="an external Cassandra (host[:port],...); default: a local node")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words = list(dict.fromkeys(COMMON))
    made: set[str] = set(words)
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in made:
            made.add(word)
            words.append(word)
    for i, word in enumerate(EXTRA):  # spread through the middle ranks
        words[300 + i * 97] = word
    return words


class Corpus:
    """Messages and queries drawn from one Zipf law over the vocabulary."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.rng = random.Random(args.seed)
        self.words = vocabulary(args.vocabulary, self.rng)
        self.cum_weights = list(itertools.accumulate(1 / (rank + 1) ** 1.1 for rank in range(len(self.words))))

    def body(self) -> str:
        chosen = self.rng.choices(self.words, cum_weights=self.cum_weights, k=self.rng.randint(3, 25))
        text = " ".join(chosen)
        return text[0].upper() + text[1:] + self.rng.choice((".", "!", "?", "", ""))

    def docs(self, count: int, conversations: int, now: int) -> list[SearchDoc]:
        start = now - 60 * DAY_MS
        seqs = [0] * conversations
        out = []
        for i in range(count):
            c = self.rng.randrange(conversations)
            seqs[c] += 1
            out.append(SearchDoc(f"conv-{c:05d}", seqs[c], f"user-{self.rng.randrange(5000)}", self.body(),
                                 start + i * (60 * DAY_MS) // count))
        return out

    def queries(self) -> dict[str, str]:
        w = self.words
        return {
            "common word": w[5],
            "middling word": w[500],
            "rare word": w[20_000],
            "two words": f"{w[40]} {w[900][:3]}",
            "2-letter prefix": w[700][:2],
        }


async def fill(index: SearchIndex, corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    docs = corpus.docs(args.messages, args.conversations, int(time.time() * 1000))
    started = time.perf_counter()
    for i in range(0, len(docs), 1000):
        await index.add(docs[i : i + 1000])
        if i and i % 100_000 == 0:
            print(f"  {i:,} messages, {time.perf_counter() - started:.0f} s", flush=True)
    took = time.perf_counter() - started
    return {"messages": len(docs), "seconds": round(took, 1), "messages_per_s": round(len(docs) / took)}


async def measure(index: SearchIndex, corpus: Corpus, args: argparse.Namespace, size: int) -> dict[str, Any]:
    rng = random.Random(args.seed + size)
    out = {}
    for kind, q in corpus.queries().items():
        samples, hits = [], []
        for _ in range(args.queries):
            scopes = {f"conv-{c:05d}": None for c in rng.sample(range(args.conversations), size)}
            started = time.perf_counter()
            page = await index.search(scopes, q)
            samples.append(time.perf_counter() - started)
            hits.append(len(page.results))
        s = sorted(samples)
        out[kind] = {"q": q, "p50_ms": round(s[len(s) // 2] * 1000, 2), "p99_ms": round(s[int(len(s) * 0.99)] * 1000, 2),
                     "max_ms": round(s[-1] * 1000, 2), "mean_hits": round(sum(hits) / len(hits), 1)}
        print(f"  {size:>5} conversations, {kind:<16} {q!r:<14} {out[kind]}", flush=True)
    return out


async def run_sqlite(args: argparse.Namespace, corpus: Corpus) -> dict[str, Any]:
    import projections.search_sqlite as backend

    path = Path(args.path)
    index = backend.SqliteSearchIndex(path, RETENTION_MS)
    await index.open()
    result: dict[str, Any] = {"backend": "sqlite", "path": str(path)}
    try:
        held = await index._run(lambda conn: conn.execute("SELECT COUNT(*) FROM search_docs").fetchone()[0])
        if held < args.messages:
            print(f"filling {path} with {args.messages:,} messages", flush=True)
            result["fill"] = await fill(index, corpus, args)
        else:
            corpus.docs(args.messages, args.conversations, 0)  # the same draws as the fill made
        result["file_mb"] = round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6)
        default = backend.SCOPE_TERMS_MAX
        for size in (args.small, args.large):
            for label, cap in (("scope terms in the query", 10**9), ("scope filtered while walking", 0)):
                backend.SCOPE_TERMS_MAX = cap
                print(f"{label}:", flush=True)
                result[f"{size} conversations, {label}"] = await measure(index, corpus, args, size)
        backend.SCOPE_TERMS_MAX = default
    finally:
        await index.close()
    return result


async def run_cassandra(args: argparse.Namespace, corpus: Corpus) -> dict[str, Any]:
    from contextlib import ExitStack

    from projections.search_cassandra import CassandraSearchIndex

    with ExitStack() as stack:
        hosts = args.hosts
        if not hosts:
            from infra.cassandra import Cassandra

            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="search-bench-")))
            hosts = stack.enter_context(Cassandra(base / "cassandra")).contact_point
        index = CassandraSearchIndex(hosts.split(","), f"search_bench_{args.seed}", RETENTION_MS)
        await index.open()
        result: dict[str, Any] = {"backend": "cassandra"}
        try:
            print(f"filling with {args.messages:,} messages", flush=True)
            result["fill"] = await fill(index, corpus, args)
            for size in (args.small, args.large):
                result[f"{size} conversations"] = await measure(index, corpus, args, size)
        finally:
            await index.close()
        return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    corpus = Corpus(args)
    run = run_sqlite if args.backend == "sqlite" else run_cassandra
    print(json.dumps(asyncio.run(run(args, corpus)), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()

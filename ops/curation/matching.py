"""MetaCLIP substring matching: which metadata entries occur in a text, with exactly MetaCLIP's semantics.

The rule: pad the text as ``" " + text + " "``, surround each of ``, . ; : ? ! ` `` with spaces, turn tabs,
newlines and carriage returns into spaces; entry ``e`` matches when ``" " + e + " "`` is a substring of the
result. Matching is case-sensitive and the result per text is the set of matched entry ids.

Why a token walk gives the same answer: every space of the padded text separates two pieces of
``padded.split(" ")``, whose first and last pieces are empty. A pattern ``" " + e + " "`` starts on one of those
spaces and, since the pieces of ``e.split(" ")`` contain no space, each must equal a whole piece of the text. So
``e`` matches exactly when ``e.split(" ")`` is a contiguous run of ``spaced(text).split(" ")`` (empty pieces
included: that is how double spaces, leading or trailing spaces and the empty entry behave). Entries holding
characters that spacing removes or isolates (tabs, ``"U.S."``) then simply never match, as in the reference.

:class:`Matcher` uses that: all texts of a batch are spaced, split and mapped to token ids in Arrow's C++
kernels, and a trie of the entries' token sequences is walked for all start positions at once in numpy, one
depth per step. :func:`match_reference` is the per-text pyahocorasick matcher MetaCLIP ships, kept as the
obviously-correct reference the fast one is tested and benchmarked against.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PUNCTUATION = ",.;:?!`"
_TO_SPACE = "\t\n\r"
_SPACING = str.maketrans({**{p: f" {p} " for p in PUNCTUATION}, **{c: " " for c in _TO_SPACE}})
MATCHES_TYPE = pa.list_(pa.int32())


def spacing(text: str) -> str:
    """The padded, punctuation-spaced text that entries are searched in."""
    return f" {text.translate(_SPACING)} "


def match_reference(texts: Iterable[str | None], metadata: Sequence[str]) -> list[list[int]]:
    """Sorted matched entry ids per text, one pyahocorasick pass per text (MetaCLIP's own approach).

    Duplicate entries share one automaton key, so the key maps to all their ids. pyahocorasick is a dev
    dependency: only tests and the benchmark call this.
    """
    import ahocorasick

    ids_by_key: dict[str, list[int]] = {}
    for entry_id, entry in enumerate(metadata):
        ids_by_key.setdefault(f" {entry} ", []).append(entry_id)
    automaton = ahocorasick.Automaton()
    for key, ids in ids_by_key.items():
        automaton.add_word(key, tuple(ids))
    automaton.make_automaton()
    out = []
    for text in texts:
        found: set[int] = set()
        for _, ids in automaton.iter(spacing(text or "")):
            found.update(ids)
        out.append(sorted(found))
    return out


def fingerprint(metadata: Sequence[str]) -> str:
    """Short hash of a metadata list, recorded with matches and counts so results of two lists never mix."""
    return hashlib.sha256(json.dumps(list(metadata), ensure_ascii=False).encode()).hexdigest()[:16]


def _space_column(texts: pa.Array) -> pa.Array:
    """:func:`spacing` over a whole column, without the padding (splitting makes it unnecessary)."""
    for p in PUNCTUATION:
        texts = pc.replace_substring(texts, p, f" {p} ")
    for c in _TO_SPACE:
        texts = pc.replace_substring(texts, c, " ")
    return texts


class Matcher:
    """A metadata list compiled into a token trie, matching whole columns of texts at once.

    Nodes are numbered depth by depth; the root's children are looked up in a dense array indexed by token id,
    deeper edges in a hash table keyed by ``parent * (V + 1) + token``, which is exact (keys are compared, not
    hashes) and probed for all live positions at once. Token id ``V`` stands for "not in any entry" and for the
    end of a text, so no walk runs past its text.
    """

    def __init__(self, metadata: Sequence[str]) -> None:
        self.n_entries = len(metadata)
        self.fingerprint = fingerprint(metadata)
        pieces = pc.split_pattern(pa.array(list(metadata), pa.large_string()), " ")
        encoded = pieces.flatten().dictionary_encode()
        self._vocab = {token: i for i, token in enumerate(encoded.dictionary.to_pylist())}
        v = len(self._vocab)
        self._stride = v + 1
        tokens = encoded.indices.to_numpy().astype(np.int64)
        starts = pieces.offsets.to_numpy()[:-1]
        lengths = pc.list_value_length(pieces).to_numpy().astype(np.int64)
        self.max_tokens = int(lengths.max()) if len(lengths) else 0

        node_of_entry = np.zeros(self.n_entries, np.int64)
        n_nodes = 1
        edge_keys, edge_child = [], []
        for depth in range(self.max_tokens):
            active = np.flatnonzero(lengths > depth)
            keys = node_of_entry[active] * self._stride + tokens[starts[active] + depth]
            unique, inverse = np.unique(keys, return_inverse=True)
            children = n_nodes + np.arange(len(unique), dtype=np.int64)
            node_of_entry[active] = children[inverse]
            edge_keys.append(unique)
            edge_child.append(children)
            n_nodes += len(unique)
        keys = np.concatenate(edge_keys) if edge_keys else np.zeros(0, np.int64)
        child = np.concatenate(edge_child) if edge_child else np.zeros(0, np.int64)
        parent = keys // self._stride
        self._root_child = np.full(self._stride, -1, np.int64)
        at_root = parent == 0
        self._root_child[keys[at_root]] = child[at_root]
        self._edges = _HashTable(keys[~at_root], child[~at_root])
        self._has_children = np.zeros(n_nodes, bool)
        self._has_children[parent] = True
        self._follows = np.zeros(self._stride, bool)
        self._follows[keys[~at_root] % self._stride] = True

        order = np.argsort(node_of_entry, kind="stable")
        self._terminal_entries = order.astype(np.int32)
        self._terminal_count = np.bincount(node_of_entry, minlength=n_nodes)
        self._terminal_start = np.concatenate([[0], np.cumsum(self._terminal_count)[:-1]])
        self._unique_terminals = int(self._terminal_count.max(initial=0)) <= 1
        self.n_nodes = n_nodes

    @property
    def nbytes(self) -> int:
        """Memory held by the compiled index: its numpy arrays and the token vocabulary dict."""
        arrays = (
            self._root_child,
            self._edges.keys,
            self._edges.values,
            self._has_children,
            self._follows,
            self._terminal_entries,
            self._terminal_count,
            self._terminal_start,
        )
        return sum(a.nbytes for a in arrays) + sys.getsizeof(self._vocab) + sum(map(sys.getsizeof, self._vocab))

    def match(
        self,
        texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
        batch: int = 1 << 18,
        walk_batch: int = 1 << 14,
    ) -> pa.Array:
        """Matched entry ids per text as ``list<int32>``, each list sorted and duplicate-free; null texts are "".

        Texts are tokenised ``batch`` at a time (the vocabulary lookup costs per distinct token, and distinct
        tokens grow slower than texts) and walked ``walk_batch`` at a time (the final sort stays in cache).
        """
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        if not isinstance(texts, pa.Array):
            texts = pa.array(list(texts), pa.large_string())
        texts = texts.cast(pa.large_string()).fill_null("")
        parts = []
        for i in range(0, len(texts), batch):
            ids, slots_per_text = self._token_ids(texts.slice(i, batch))
            first_slot = np.concatenate([[0], np.cumsum(slots_per_text)])
            for j in range(0, len(slots_per_text), walk_batch):
                k = min(j + walk_batch, len(slots_per_text))
                parts.append(self._walk(ids[first_slot[j] : first_slot[k]], slots_per_text[j:k]))
        return pa.concat_arrays(parts) if parts else pa.array([], MATCHES_TYPE)

    def _token_ids(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of all texts back to back, each text followed by the end id; and the slots per text.

        Only the batch's distinct tokens go through the Python vocabulary dict (Arrow's ``index_in`` would
        rebuild a hash of the whole vocabulary on every call)."""
        pieces = pc.split_pattern(_space_column(texts), " ")
        encoded = pieces.flatten().dictionary_encode()
        unknown = self._stride - 1
        known = np.array([self._vocab.get(t, unknown) for t in encoded.dictionary.to_pylist()], np.int64)
        ids = known[encoded.indices.to_numpy()]
        tokens_per_text = pc.list_value_length(pieces).to_numpy().astype(np.int64)
        slots = np.full(len(ids) + len(texts), unknown, np.int64)
        slots[np.arange(len(ids)) + np.repeat(np.arange(len(texts)), tokens_per_text)] = ids
        return slots, tokens_per_text + 1

    def _walk(self, ids: np.ndarray, slots_per_text: np.ndarray) -> pa.Array:
        """Walk the trie from every slot at once, one depth per step; end slots stop every walk at its text."""
        node = self._root_child[ids]
        pos = np.flatnonzero(node >= 0)
        node = node[pos]
        found_pos, found_node = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        depth = 1
        while pos.size:
            terminal = self._terminal_count[node] > 0
            found_pos.append(pos[terminal])
            found_node.append(node[terminal])
            going = self._has_children[node]
            pos, node = pos[going], node[going]
            following = ids[pos + depth]
            going = self._follows[following]
            pos, node = pos[going], node[going]
            node = self._edges.get(node * self._stride + following[going])
            hit = node >= 0
            pos, node = pos[hit], node[hit]
            depth += 1
        text_of_slot = np.repeat(np.arange(len(slots_per_text)), slots_per_text)
        text, entry = self._entries_of(np.concatenate(found_pos), np.concatenate(found_node), text_of_slot)
        width = max(self.n_entries, 1)
        pairs = np.sort(text * width + entry)
        pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])] if len(pairs) else pairs
        text, entry = np.divmod(pairs, width)
        offsets = np.searchsorted(text, np.arange(len(slots_per_text) + 1)).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(entry.astype(np.int32)))

    def _entries_of(self, pos: np.ndarray, node: np.ndarray, text_of_slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(text, entry id) pairs of the terminal nodes reached; a node of duplicate entries yields them all."""
        text = text_of_slot[pos]
        if self._unique_terminals:
            return text, self._terminal_entries[self._terminal_start[node]].astype(np.int64)
        count = self._terminal_count[node]
        rows = np.repeat(np.arange(len(node)), count)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
        return text[rows], self._terminal_entries[self._terminal_start[node][rows] + within].astype(np.int64)


class _HashTable:
    """A static open-addressing map from non-negative int64 keys to non-negative int64 values, probed in numpy.

    At most half full, so a lookup touches one or two slots, where a binary search over a million sorted keys
    touches twenty: the walk does one lookup per live position and depth.
    """

    _EMPTY = -1
    _MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        bits = max(4, int(2 * max(len(keys), 1) - 1).bit_length())
        self._shift = np.uint64(64 - bits)
        self._mask = (1 << bits) - 1
        self.keys = np.full(1 << bits, self._EMPTY, np.int64)
        self.values = np.full(1 << bits, -1, np.int64)
        todo = np.arange(len(keys))
        slot = self._slot(keys)
        while todo.size:
            free = self.keys[slot] == self._EMPTY
            _, first = np.unique(slot[free], return_index=True)
            placed = np.flatnonzero(free)[first]
            self.keys[slot[placed]] = keys[todo[placed]]
            self.values[slot[placed]] = values[todo[placed]]
            waiting = np.ones(len(todo), bool)
            waiting[placed] = False
            todo, slot = todo[waiting], (slot[waiting] + 1) & self._mask

    def _slot(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.astype(np.uint64) * self._MULTIPLIER) >> self._shift).astype(np.int64)

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key, -1 where absent."""
        out = np.full(len(keys), -1, np.int64)
        todo = np.arange(len(keys))
        slot = self._slot(keys)
        while todo.size:
            found = self.keys[slot]
            hit = found == keys[todo]
            out[todo[hit]] = self.values[slot[hit]]
            going = ~hit & (found != self._EMPTY)
            todo, slot = todo[going], (slot[going] + 1) & self._mask
        return out

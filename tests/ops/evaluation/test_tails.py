import pyarrow as pa

from ops.evaluation.tails import class_frequencies, entry_counts_from_table, neglected_tails


def test_frequency_sums_name_and_distinct_synonyms_case_sensitive():
    counts = {"cat": 10, "kitty": 3, "Cat": 100, "dog": 7}
    freq = class_frequencies(["cat", "dog", "axolotl"], counts, {"cat": ["kitty", "cat"], "dog": ["hound"]})
    assert freq == [13, 7, 0]


def test_neglected_tails_table_rarest_first_for_one_language():
    per_class = pa.table(
        {
            "language": ["en", "en", "en", "de"],
            "class_index": [0, 1, 2, 0],
            "classname": ["cat", "dog", "axolotl", "Katze"],
            "n_samples": [2, 2, 0, 2],
            "recall": [1.0, 0.5, None, 0.0],
        }
    )
    counts = entry_counts_from_table(pa.table({"entry_id": [0, 1], "entry": ["cat", "dog"], "count": [9, 4]}))
    t = neglected_tails(per_class, counts)
    assert t["classname"].to_pylist() == ["axolotl", "dog", "cat"]
    assert t["frequency"].to_pylist() == [0, 4, 9]
    assert t["recall"].to_pylist() == [None, 0.5, 1.0]

"""SemanticTree on small hand-made trees: levels, targets, factors, multi-hot rows, JSON files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hierarchy.isa import read_is_a, single_parent_mapping
from hierarchy.names import first_lemma, read_words
from hierarchy.tree import SemanticTree, normalization_factors

# entity (not a class) -> animal, plant; animal -> bird (not a class) -> swan; animal -> dog -> terrier
ANIMALS_PARENTS = {"animal": "entity", "plant": "entity", "bird": "animal", "swan": "bird",
                   "dog": "animal", "terrier": "dog", "oak": "plant"}
ANIMALS = ["terrier", "swan", "plant", "oak", "dog", "animal"]


@pytest.fixture()
def animals() -> SemanticTree:
    return SemanticTree.from_parents(ANIMALS, ANIMALS_PARENTS, names={w: w.upper() for w in ANIMALS})


def test_classes_are_sorted_and_parents_skip_non_classes(animals):
    assert animals.class_list == ["animal", "dog", "oak", "plant", "swan", "terrier"]
    assert animals.num_classes == 6
    assert animals.parent_of == [-1, 0, 3, -1, 0, 1]  # swan's parent is animal, past 'bird'
    assert animals.level_of == [0, 1, 1, 0, 1, 2]
    assert animals.class_tree_list == [[0], [1, 0], [2, 3], [3], [4, 0], [5, 1, 0]]
    assert animals.ancestors(5) == [1, 0] and animals.chain(5) == [5, 1, 0]
    assert animals.index_of("swan") == 4 and animals.name(4) == "SWAN"
    with pytest.raises(KeyError, match="bird is not a class"):
        animals.index_of("bird")


def test_single_class_deepest_level_gets_no_softmax_but_keeps_ancestor_targets(animals):
    assert animals.level_counts == [2, 3, 1]
    assert animals.softmax_levels == [0, 1] and animals.num_levels == 2
    assert animals.levels == [[0, 3], [1, 2, 4]]
    assert animals.normalization_factors == [1.0, 6 / 4]
    assert animals.target_table.dtype == np.int64
    np.testing.assert_array_equal(animals.target_table, [
        [0, -1],  # animal: root, no level-1 label
        [0, 0],   # dog
        [1, 1],   # oak
        [1, -1],  # plant
        [0, 2],   # swan
        [0, 0],   # terrier: its own level has no softmax; animal and dog still count
    ])
    labels = np.array([5, 3, 4])
    np.testing.assert_array_equal(animals.target_table[labels], [[0, 0], [1, -1], [0, 2]])


def test_dropped_middle_level_keeps_targets_aligned_by_level():
    tree = SemanticTree.from_parents(["r1", "r2", "m", "x", "y"], {"m": "r1", "x": "m", "y": "m"})
    assert tree.class_list == ["m", "r1", "r2", "x", "y"]
    assert tree.level_counts == [2, 1, 2]
    assert tree.softmax_levels == [0, 2]
    assert tree.levels == [[1, 2], [3, 4]]
    assert tree.normalization_factors == [1.0, 5 / 2]
    np.testing.assert_array_equal(tree.target_table, [[0, -1], [0, -1], [1, -1], [0, 0], [0, 1]])
    assert "    1        1       no         -" in tree.summary()


def test_multi_hot_targets(animals):
    assert animals.multi_hot_indices(5) == [0, 1, 5]
    assert animals.multi_hot_index_lists() == [[0], [0, 1], [2, 3], [3], [0, 4], [0, 1, 5]]
    matrix = animals.multi_hot_matrix()
    assert matrix.dtype == bool and matrix.shape == (6, 6)
    assert [np.flatnonzero(row).tolist() for row in matrix] == animals.multi_hot_index_lists()


def test_normalization_factors_follow_eq_3_4_and_are_capped():
    assert normalization_factors([10, 5, 2, 1], [0, 1, 2]) == [1.0, 18 / 8, 6.0]
    assert normalization_factors([10, 5, 2, 1], [0, 1, 2], max_factor=5.0) == [1.0, 18 / 8, 5.0]
    assert normalization_factors([100, 2], [0, 1]) == [1.0, 20.0]


def test_save_load_round_trip_is_byte_identical(animals, tmp_path):
    first, second = tmp_path / "tree.json", tmp_path / "again.json"
    animals.save(first)
    loaded = SemanticTree.load(first)
    loaded.save(second)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.json", "tree.json"]  # no temp files
    doc = json.loads(first.read_text())
    assert list(doc["class_description"]) == doc["class_list"] == animals.class_list
    assert doc["class_tree_list"] == animals.class_tree_list
    assert doc["target_table"] == animals.target_table.tolist()
    assert doc["source"] == "parents"
    np.testing.assert_array_equal(loaded.target_table, animals.target_table)
    assert loaded.class_description == animals.class_description


def test_load_rejects_tampered_and_foreign_files(animals, tmp_path):
    path = tmp_path / "tree.json"
    animals.save(path)
    doc = json.loads(path.read_text())
    doc["target_table"][5][1] = 1
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="target_table disagree"):
        SemanticTree.load(path)
    path.write_text(json.dumps({"class_list": ["a"]}))
    with pytest.raises(ValueError, match="not a semantic tree file: missing class_description"):
        SemanticTree.load(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="is not JSON"):
        SemanticTree.load(path)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="duplicate class ids: a"):
        SemanticTree.from_parents(["a", "b", "a"], {})
    with pytest.raises(ValueError, match="at least one class"):
        SemanticTree.from_parents([], {})
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        SemanticTree.from_parents(["a", "b"], {"a": "b", "b": "a"})
    with pytest.raises(ValueError, match="cycle through x"):
        SemanticTree.from_parents(["a"], {"a": "x", "x": "y", "y": "x"})
    with pytest.raises(ValueError, match="no name for 1 class"):
        SemanticTree.from_parents(["a", "b"], {}, names={"a": "A"})


def test_wordnet_rule_prefers_shallowest_longest_path_then_deepest_shortest_then_wnid():
    dag = {"root": (), "a": ("root",), "b": ("a",), "c": ("root",), "d": ("root",),
           "p": ("a", "root"), "q": ("a",),
           "x": ("b", "c"),  # max depth 2 vs 1: c
           "y": ("p", "q"),  # both max depth 2; min depth 1 vs 2: q
           "z": ("d", "c")}  # all equal: smallest id, c
    parents = single_parent_mapping(["x", "y", "z"], lambda w: dag[w])
    assert parents == {"x": "c", "y": "q", "z": "c", "c": "root", "q": "a", "a": "root"}
    with pytest.raises(ValueError, match="cycle"):
        single_parent_mapping(["x"], lambda w: {"x": ("y",), "y": ("x",)}[w])


def test_is_a_file_last_listed_parent_wins(tmp_path):
    path = tmp_path / "is_a.txt"
    path.write_text("n1 n3\nn2 n3\n\nn1 n2\n")
    assert read_is_a(path) == {"n3": "n2", "n2": "n1"}
    path.write_text("n1 n3\nn2\n")
    with pytest.raises(ValueError, match=r"is_a.txt:2: expected 'parent child'"):
        read_is_a(path)


def test_words_file_names_by_first_lemma(tmp_path):
    assert first_lemma(" grey kingbird, Tyrannus dominicensis") == "grey_kingbird"
    path = tmp_path / "words.txt"
    path.write_text("n01440764\ttench, Tinca tinca\nn01549053\tgrey kingbird, gray kingbird\n")
    assert read_words(path) == {"n01440764": "tench", "n01549053": "grey_kingbird"}


# fish (not a class) -> tench, goldfish; toilet tissue; a tree's own wnid that ImageNet-1K lacks
IN1K_PARENTS = {"n01440764": "n02512053", "n01443537": "n02512053", "n02512053": "n00015388"}
IN1K_CLASSES = ["n15075141", "n01443537", "n00015388", "n01440764"]


def test_the_tree_maps_its_imagenet1k_classes_to_their_1k_index(tmp_path):
    tree = SemanticTree.from_parents(IN1K_CLASSES, IN1K_PARENTS)
    # tench is ImageNet-1K's class 0, goldfish 1, toilet tissue 999; animal is no ImageNet-1K class
    assert tree.imagenet1k_index == {"n01440764": 0, "n01443537": 1, "n15075141": 999}
    path = tmp_path / "tree.json"
    tree.save(path)
    text = path.read_text()
    assert ' "imagenet1k_index": {\n  "n01440764": 0,\n  "n01443537": 1,\n  "n15075141": 999\n },\n' in text
    assert list(json.loads(text)) == sorted(json.loads(text))  # keys still sorted
    SemanticTree.load(path).save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()
    assert SemanticTree.from_parents(["a", "b"], {}).imagenet1k_index == {}  # none: an empty map


def test_a_tree_file_written_before_the_imagenet1k_map_still_loads(tmp_path):
    tree = SemanticTree.from_parents(IN1K_CLASSES, IN1K_PARENTS)
    path = tmp_path / "old.json"
    tree.save(path)
    doc = json.loads(path.read_text())
    del doc["imagenet1k_index"]
    path.write_text(json.dumps(doc))
    old = SemanticTree.load(path)
    assert old.class_list == tree.class_list and old.imagenet1k_index == tree.imagenet1k_index
    doc["imagenet1k_index"] = {"n01440764": 1}  # a map that is not ImageNet-1K's
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="imagenet1k_index disagree"):
        SemanticTree.load(path)

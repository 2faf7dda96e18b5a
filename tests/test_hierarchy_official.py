"""The semantic tree of timm's official ImageNet-21K-P class lists, on real WordNet 3.0 and
ImageNet's is-a file: paper Table 1, the released histogram and factors, source agreement."""
from __future__ import annotations

import pytest

from hierarchy import SemanticTree, unknown_wnids

# Paper Table 1, by wnid (names checked below; 'plant' and 'whitetip shark' name two classes each).
TABLE_1 = {
    0: {"n00007846": "person", "n00015388": "animal", "n00017222": "plant", "n00021265": "food",
        "n00021939": "artifact"},
    1: {"n01317541": "domestic_animal", "n02802544": "basketball_court", "n03051540": "clothing"},
    6: {"n01493146": "whitetip_shark", "n01537895": "ortolan", "n01549053": "grey_kingbird"},
}
# Histograms (levels 0-11) documented in hierarchy/README.md.
FALL11_IS_A = [302, 1378, 2100, 2605, 2204, 1371, 716, 290, 146, 82, 26, 1]
FALL11_WORDNET = [319, 1393, 2154, 2628, 2151, 1336, 700, 286, 146, 83, 24, 1]
WINTER21_IS_A = [302, 1067, 1823, 2486, 2165, 1353, 710, 289, 146, 82, 26, 1]
WINTER21_WORDNET = [315, 1092, 1865, 2509, 2117, 1319, 694, 285, 146, 83, 24, 1]
WINTER21_FACTORS = ["1.0", "1.03", "1.151", "1.44", "2.19", "4.008", "8.333", "19.21", "20", "20", "20"]


def read_list(path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def fall11(timm_info_dir) -> list[str]:
    return read_list(timm_info_dir / "imagenet21k_miil_synsets.txt")


@pytest.fixture(scope="module")
def winter21(timm_info_dir) -> list[str]:
    return read_list(timm_info_dir / "imagenet21k_miil_w21_synsets.txt")


@pytest.fixture(scope="module")
def is_a_path(shared_dir):
    return shared_dir / "reference" / "is_a.txt"


@pytest.fixture(scope="module")
def words_path(shared_dir):
    return shared_dir / "reference" / "words.txt"


@pytest.fixture(scope="module")
def fall11_wordnet(fall11) -> SemanticTree:
    return SemanticTree.build(fall11)


@pytest.fixture(scope="module")
def fall11_is_a(fall11, is_a_path, words_path) -> SemanticTree:
    return SemanticTree.build(fall11, source="is_a", is_a_path=is_a_path, words_path=words_path)


@pytest.fixture(scope="module")
def winter21_wordnet(winter21) -> SemanticTree:
    return SemanticTree.build(winter21)


@pytest.fixture(scope="module")
def winter21_is_a(winter21, is_a_path, words_path) -> SemanticTree:
    return SemanticTree.build(winter21, source="is_a", is_a_path=is_a_path, words_path=words_path)


@pytest.mark.parametrize("tree_name", ["fall11_wordnet", "fall11_is_a"])
def test_paper_table_1_and_11_softmax_levels(tree_name, request, fall11):
    tree = request.getfixturevalue(tree_name)
    assert tree.class_list == fall11  # the official list is sorted: index = position
    for level, classes in TABLE_1.items():
        for wnid, name in classes.items():
            i = tree.index_of(wnid)
            assert (tree.name(i), tree.level_of[i]) == (name, level)
    assert tree.num_levels == 11
    assert tree.softmax_levels == list(range(11))


def test_winter21_is_a_reproduces_released_histogram_and_factors(winter21_is_a):
    assert winter21_is_a.level_counts == WINTER21_IS_A
    assert [len(group) for group in winter21_is_a.levels] == WINTER21_IS_A[:11]
    shown = [round(f, len(e.partition(".")[2])) for f, e in
             zip(winter21_is_a.normalization_factors, WINTER21_FACTORS)]
    assert shown == [float(e) for e in WINTER21_FACTORS]


def test_documented_histograms_and_source_agreement(fall11_wordnet, fall11_is_a,
                                                    winter21_wordnet, winter21_is_a):
    assert fall11_is_a.level_counts == FALL11_IS_A
    assert fall11_wordnet.level_counts == FALL11_WORDNET
    assert winter21_wordnet.level_counts == WINTER21_WORDNET
    assert winter21_wordnet.num_levels == 11

    def differing(a, b):
        return sum(x != y for x, y in zip(a.class_tree_list, b.class_tree_list))

    assert differing(fall11_wordnet, fall11_is_a) == 560
    assert differing(winter21_wordnet, winter21_is_a) == 517
    # WordNet lemmas and words.txt give the same names to every official class.
    assert fall11_wordnet.class_description == fall11_is_a.class_description


def test_targets_of_a_deep_class(winter21_is_a):
    tree = winter21_is_a
    kingbird = tree.index_of("n01549053")
    row = tree.target_table[kingbird]
    chain_top_down = tree.chain(kingbird)[::-1]
    for k, group in enumerate(tree.levels):
        expected = chain_top_down[k] if k < len(chain_top_down) else None
        assert (group[row[k]] if row[k] >= 0 else None) == expected
    assert (row[:7] >= 0).all() and (row[7:] == -1).all()
    assert [tree.name(i) for i in tree.chain(kingbird)] == [
        "grey_kingbird", "kingbird", "New_World_flycatcher", "passerine", "bird", "vertebrate", "animal"]


def test_unknown_wnids_are_named(is_a_path):
    wnids = ["n01440764", "n99999999", "x01440764", "n09450163"]
    assert unknown_wnids(wnids) == ["n99999999", "x01440764"]
    # The sun (n09450163) is missing from is_a.txt but is a WordNet noun: a root there.
    assert unknown_wnids(wnids, source="is_a", is_a_path=is_a_path) == ["n99999999", "x01440764"]
    with pytest.raises(ValueError, match=r"2 class id\(s\) are not WordNet 3.0 nouns: n99999999, x01440764"):
        SemanticTree.build(wnids)
    with pytest.raises(ValueError, match="needs is_a_path"):
        SemanticTree.build(wnids[:1], source="is_a")
    with pytest.raises(ValueError, match="unknown is-a source 'imagenet'"):
        SemanticTree.build(wnids[:1], source="imagenet")

"""trainer.predict: the semantic chain of one image, by either strategy."""
from __future__ import annotations

import torch

from tests.trainer_fixtures import fixture_tree
from trainer.levels import LevelLayout
from trainer.predict import semantic_chain


def test_tree_strategy_follows_descendants():
    tree = fixture_tree()
    layout = LevelLayout.from_tree(tree)
    probs = torch.full((tree.num_classes,), 0.1)
    probs[tree.index_of("n00017222")] = 0.9  # plant wins the root level
    probs[tree.index_of("n01471682")] = 0.95  # vertebrate (an animal) wins level 1 overall
    probs[tree.index_of("n13104059")] = 0.6  # tree: plant's best child
    chain = semantic_chain(probs, layout, "tree", min_prob=0.5)
    assert [tree.name(c) for c, _ in chain] == ["plant", "tree"]
    argmax = semantic_chain(probs, layout, "argmax", min_prob=0.5)
    assert [tree.name(c) for c, _ in argmax] == ["plant", "vertebrate"]


def test_an_image_is_made_the_way_the_pipeline_stores_it_then_decoded_as_in_training(tmp_path):
    import io

    from PIL import Image

    from pipeline.images import squish_resize
    from trainer.predict import load_image
    from trainer.transforms import decode_rgb

    image = Image.new("RGBA", (300, 180), (200, 30, 30, 255))
    image.paste((0, 0, 255, 0), (0, 0, 150, 180))  # the left half transparent (blue underneath)
    out = io.BytesIO()
    image.save(out, "PNG")
    (tmp_path / "x.png").write_bytes(out.getvalue())
    got = load_image(tmp_path / "x.png", 64)
    expected = decode_rgb(squish_resize(out.getvalue(), 224, 95), 64)
    assert torch.equal(got, torch.from_numpy(expected.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255)
    assert got[0, :, 32, 5].min() > 0.95  # transparency composited onto white, as the pipeline does

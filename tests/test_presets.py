"""vlae_tf.presets: each preset's default dataset, and registrations without one."""

import pytest

import pipelines
import vlae_tf
from vlae_tf import presets
from vlae_tf.config import VLAEConfig

# What launch/common.py's DEFAULT_DATASETS table held before the datasets moved to the
# registrations (`launch.train --preset=X` without --dataset trains on these), plus the
# presets added with the paper's binary model.
EXPECTED = {
    "mnist_paper": "mnist",
    "binarized_mnist_paper": "binarized_mnist",
    "omniglot_paper": "omniglot_burda",  # the paper's split (Burda et al.)
    "caltech101_paper": "caltech101_silhouettes",
    "mnist_gated": "mnist",  # the gated models the binary "paper" presets used to be
    "omniglot_gated": "omniglot",
    "caltech101_gated": "caltech101_silhouettes",
    "cifar10_paper": "cifar10",
    "cifar10_paper_4x2": "cifar10",
    "cifar10_paper_5x3": "cifar10",
    "cifar10_paper_7x4": "cifar10",
    "cifar10_paper_7x4_gray": "cifar10",
    "cifar10_paper_resnet": "cifar10",  # the paper's CIFAR models (spatial latent)
    "cifar10_gated": "cifar10",  # the vector-latent model cifar10_paper used to be
    "mnist_cpu": "mnist5k_binary",
    "fashion_mnist_cpu": "fashion_mnist",
    "cifar10_cpu": "cifar10",
    "factorized_vae_cpu": "mnist5k_binary",
    "unconditional_cpu": "mnist5k_binary",
    "global_cpu": "mnist5k_binary",
    "standard_normal_prior_cpu": "mnist5k_binary",
    "iaf_posterior_cpu": "mnist5k_binary",
}


def test_existing_presets_keep_their_default_datasets():
    assert {name: presets.default_dataset(name) for name in EXPECTED} == EXPECTED
    assert presets.describe("mnist_cpu").endswith("[default dataset: mnist5k_binary]")


@pytest.mark.parametrize("name", presets.names())
def test_a_presets_default_dataset_fits_its_config(name):
    dataset = presets.default_dataset(name)
    if dataset is None:  # allowed (dataset is optional): nothing to fit
        assert "default dataset" not in presets.describe(name)
        return
    info = pipelines.info(dataset)  # a known dataset (ValueError otherwise)
    config = presets.get(name)
    assert tuple(info.image_shape) == tuple(config.image_shape), (name, dataset)
    assert info.max_value == config.max_value, (name, dataset)


def test_register_without_a_dataset_still_works_and_bad_datasets_are_refused():
    name = "_test_preset_without_dataset"
    try:
        presets.register(name, "a test preset")(lambda: VLAEConfig())
        assert presets.default_dataset(name) is None
        assert presets.describe(name) == "a test preset"
        assert isinstance(vlae_tf.presets.get(name), VLAEConfig)
    finally:  # leave the registry as the other tests expect it
        for table in (presets._REGISTRY, presets._DESCRIPTIONS, presets._DATASETS):
            table.pop(name, None)
    with pytest.raises(ValueError, match="dataset: expected a dataset name"):
        presets.register("_test_bad", "x", dataset=5)
    with pytest.raises(ValueError, match="unknown preset"):
        presets.default_dataset("no_such_preset")

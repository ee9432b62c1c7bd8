"""SavedModel export: signatures, versioned layout, a fresh process without vlae_tf or TFP,
input validation, the row ("instances") request format, and the `launch.export` CLI."""

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import export
from vlae_tf.config import VLAEConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK_SIZE = 3
NUM_SAMPLES = 7  # chunks of 3, 3, 1: the while_loop's partial last chunk is exercised
SAMPLE_SEED, SAMPLE_NUM, SAMPLE_TEMPERATURE = 5, 3, 0.8
DECOMPRESS_SEED, DECOMPRESS_TEMPERATURE = [11, 12], 0.9
# Request limits of the module's export: what the tests below ask for, and no more
# (max_images 12 keeps log_likelihood's chunk of 3 for the 4 test images).
LIMITS = {"max_images": 12, "max_num": SAMPLE_NUM, "max_num_samples": NUM_SAMPLES}


def tiny_config(**changes):
    config = VLAEConfig(image_shape=(8, 8, 1), latent_size=4, encoder_filters=(8,),
                        encoder_hidden=16, prior="af", prior_steps=2, prior_hidden=(16,),
                        iaf_steps=1, iaf_hidden=(16,), iaf_context_size=8, window=(3, 2),
                        decoder_layers=2, decoder_filters=8, decoder_residual_blocks=1,
                        z_map_channels=4)
    return config.replace(**changes)


def perturbed_model(config, seed=0, scale=0.3):
    """A model whose every weight is moved off its initial value (MADE outputs start at
    zero, i.e. identity flows), so all components matter to the outputs."""
    model = vlae_tf.VLAE(config)
    generator = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        variable.assign(variable + generator.normal(0, scale, variable.shape).astype("float32"))
    return model


def binary_images(count=4, seed=0, shape=(8, 8, 1)):
    generator = np.random.default_rng(seed)
    images = generator.random((count,) + shape) < 0.3
    images[: count // 2, : shape[0] // 2] |= generator.random(
        (count // 2, shape[0] // 2) + shape[1:]) < 0.7
    return images.astype(np.uint8)


def keras_outputs(model, images):
    """What the Keras model computes for the arguments the signatures get in these tests."""
    mean, scale = model.encode(images)
    return {
        "elbo": {key: value.numpy() for key, value in model.elbo(images).items()},
        "log_likelihood": model.importance_log_likelihood(
            images, NUM_SAMPLES, chunk_size=CHUNK_SIZE).numpy(),
        "encode": {"mean": mean.numpy(), "scale": scale.numpy()},
        # The reference sampler (the default may compile with XLA, which rounds
        # differently; the export draws the reference's bits, see vlae_tf/export.py).
        "decompress": model.decompress(images, seed=np.array(DECOMPRESS_SEED, np.int32),
                                       temperature=DECOMPRESS_TEMPERATURE,
                                       method="naive").numpy(),
        "sample": model.sample(SAMPLE_NUM, seed=SAMPLE_SEED, temperature=SAMPLE_TEMPERATURE,
                               method="naive").numpy(),
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = perturbed_model(tiny_config())
    images = binary_images()
    export_dir = str(tmp_path_factory.mktemp("exports") / "vlae")
    first = export.export_saved_model(model, export_dir, chunk_size=CHUNK_SIZE, **LIMITS)
    second = export.export_saved_model(model, export_dir, chunk_size=CHUNK_SIZE, **LIMITS)
    return {"model": model, "images": images, "export_dir": export_dir,
            "versions": [first, second], "expected": keras_outputs(model, images)}


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported["versions"][0])


# ----------------------------------------------------------------------------------- layout
def test_versioned_layout_as_tf_serving_expects(exported):
    export_dir, model = exported["export_dir"], exported["model"]
    assert exported["versions"] == [os.path.join(export_dir, "1"), os.path.join(export_dir, "2")]
    assert sorted(os.listdir(export_dir)) == ["1", "2"]  # no staging directory left behind
    assert export.existing_versions(export_dir) == [1, 2]
    assert export.latest_version_dir(export_dir) == os.path.join(export_dir, "2")
    for version_dir in exported["versions"]:
        assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
        assert os.path.isfile(os.path.join(version_dir, "variables", "variables.index"))
        with open(os.path.join(version_dir, "assets.extra", export.EXPORT_INFO_FILE)) as handle:
            info = json.load(handle)
        assert info["default_signature"] == "elbo"
        assert sorted(info["signatures"]) == sorted(export.SIGNATURES)
        assert info["chunk_size"] == CHUNK_SIZE
        assert info["limits"] == LIMITS
        assert VLAEConfig.from_dict(info["config"]) == model.config
    with pytest.raises(FileExistsError, match="exists"):
        export.export_saved_model(model, export_dir, version=1)
    with pytest.raises(ValueError, match="version: expected a positive int"):
        export.export_saved_model(model, export_dir, version=0)
    with pytest.raises(FileNotFoundError, match="numeric version"):
        export.latest_version_dir(os.path.join(export_dir, "1", "variables"))


# ------------------------------------------------------------------------- saved_model_cli
EXPECTED_SIGNATURES = {
    "elbo": ({"images": ("DT_UINT8", "(-1, 8, 8, 1)")},
             {"elbo": ("DT_FLOAT", "(-1)"), "recon": ("DT_FLOAT", "(-1)"),
              "kl": ("DT_FLOAT", "(-1)")}),
    "log_likelihood": ({"images": ("DT_UINT8", "(-1, 8, 8, 1)"),
                        "num_samples": ("DT_INT32", "(-1)")},
                       {"log_likelihood": ("DT_FLOAT", "(-1)")}),
    "encode": ({"images": ("DT_UINT8", "(-1, 8, 8, 1)")},
               {"mean": ("DT_FLOAT", "(-1, 4)"), "scale": ("DT_FLOAT", "(-1, 4)")}),
    "decompress": ({"images": ("DT_UINT8", "(-1, 8, 8, 1)"), "seed": ("DT_INT32", "(-1, 2)"),
                    "temperature": ("DT_FLOAT", "(-1)")},
                   {"images": ("DT_UINT8", "(-1, 8, 8, 1)")}),
    "sample": ({"num": ("DT_INT32", "(-1)"), "seed": ("DT_INT32", "(-1, 2)"),
                "temperature": ("DT_FLOAT", "(-1)")},
               {"images": ("DT_UINT8", "(-1, 8, 8, 1)")}),
}


def _saved_model_cli():
    script = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def _parse_signature_defs(text):
    """{name: (inputs, outputs)} with {tensor: (dtype, shape)} from `show --all` output."""
    pattern = re.compile(r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+"
                         r"shape: (\([^)]*\)|unknown_rank)")
    parts = re.split(r"signature_def\['([^']+)'\]:", text.split("Concrete Functions:")[0])
    signatures = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        inputs, outputs = {}, {}
        for kind, tensor, dtype, shape in pattern.findall(body):
            (inputs if kind == "inputs" else outputs)[tensor] = (dtype, shape)
        signatures[name] = (inputs, outputs)
    return signatures


def test_saved_model_cli_lists_the_signatures(exported):
    result = subprocess.run(
        _saved_model_cli() + ["show", "--dir", exported["versions"][0], "--all"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    signatures = _parse_signature_defs(result.stdout)
    for name, expected in EXPECTED_SIGNATURES.items():
        assert signatures.get(name) == expected, (name, signatures.get(name))
    assert signatures["serving_default"] == EXPECTED_SIGNATURES[export.DEFAULT_SIGNATURE]
    assert set(signatures) == set(EXPECTED_SIGNATURES) | {"serving_default",
                                                          "__saved_model_init_op"}
    assert "tensorflow/serving/predict" in result.stdout


# --------------------------------------------------------------------------- fresh process
FRESH_PROCESS_SCRIPT = r"""
import importlib.abc, json, sys

class RefuseImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("vlae_tf", "tensorflow_probability"):
            raise ImportError(f"{name} must not be needed to load and run the SavedModel")
        return None

sys.meta_path.insert(0, RefuseImport())
import numpy as np
import tensorflow as tf

inputs = dict(np.load(sys.argv[1]))
images = tf.constant(inputs["images"])
batch = images.shape[0]

def run(signature, **kwargs):
    outputs = signature(**{key: tf.constant(value) for key, value in kwargs.items()})
    return {key: value.numpy().tolist() for key, value in outputs.items()}

results = {}
for version_dir in sys.argv[2:]:
    signatures = tf.saved_model.load(version_dir).signatures
    sample_args = dict(num=np.array([inputs["sample_num"]], np.int32),
                       seed=inputs["sample_seed"][None],
                       temperature=np.array([inputs["sample_temperature"]], np.float32))
    results[version_dir] = {
        "signatures": sorted(signatures),
        "serving_default": run(signatures["serving_default"], images=images),
        "elbo": run(signatures["elbo"], images=images),
        "log_likelihood": run(signatures["log_likelihood"], images=images,
                              num_samples=np.full([batch], inputs["num_samples"], np.int32)),
        "encode": run(signatures["encode"], images=images),
        "decompress": run(signatures["decompress"], images=images,
                          seed=np.tile(inputs["decompress_seed"][None], [batch, 1]),
                          temperature=np.full([batch], inputs["decompress_temperature"],
                                              np.float32)),
        "sample": run(signatures["sample"], **sample_args),
        "sample_again": run(signatures["sample"], **sample_args),
        "sample_other_seed": run(signatures["sample"], **{
            **sample_args, "seed": inputs["sample_seed"][None] + 1}),
    }

# Requests over the export's limits: refused at once with a clear error (before any work:
# num=10**6 used to kill the process, num_samples=2**31-1 to run forever), and the same
# loaded model answers a valid request afterwards.
loaded = tf.saved_model.load(sys.argv[2])
signatures = loaded.signatures
limits = {key: int(value) for key, value in loaded.limits().items()}
seed, temperature = inputs["sample_seed"][None], np.array([1.0], np.float32)
too_many = np.concatenate([inputs["images"]] * (limits["max_images"] // batch + 1))
too_many = too_many[:limits["max_images"] + 1]
over_limit = {
    "sample_num_1e6": ("sample", dict(num=np.array([10 ** 6], np.int32), seed=seed,
                                      temperature=temperature)),
    "sample_num_int32_max": ("sample", dict(num=np.array([2 ** 31 - 1], np.int32), seed=seed,
                                            temperature=temperature)),
    "sample_num_negative": ("sample", dict(num=np.array([-3], np.int32), seed=seed,
                                           temperature=temperature)),
    "log_likelihood_int32_max": ("log_likelihood", dict(
        images=images, num_samples=np.array([2 ** 31 - 1], np.int32))),
    "log_likelihood_negative": ("log_likelihood", dict(
        images=images, num_samples=np.array([-1], np.int32))),
    "elbo_too_many_images": ("elbo", dict(images=too_many)),
    "decompress_too_many_images": ("decompress", dict(
        images=too_many, seed=seed, temperature=temperature)),
}
refused = {}
for key, (name, arguments) in over_limit.items():
    try:
        signatures[name](**{k: tf.constant(v) for k, v in arguments.items()})
        refused[key] = None
    except tf.errors.InvalidArgumentError as error:
        refused[key] = error.message
results["limits"] = {
    "limits": limits, "refused": refused,
    "sample_after": run(signatures["sample"], num=np.array([inputs["sample_num"]], np.int32),
                        seed=inputs["sample_seed"][None],
                        temperature=np.array([inputs["sample_temperature"]], np.float32)),
    "log_likelihood_after": run(signatures["log_likelihood"], images=images,
                                num_samples=np.array([limits["max_num_samples"]], np.int32)),
}
leaked = [name for name in sys.modules
          if name.split(".")[0] in ("vlae_tf", "tensorflow_probability")]
assert not leaked, leaked
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def fresh_process_outputs(exported, tmp_path_factory):
    inputs = tmp_path_factory.mktemp("fresh") / "inputs.npz"
    np.savez(inputs, images=exported["images"], num_samples=NUM_SAMPLES,
             decompress_seed=np.array(DECOMPRESS_SEED, np.int32),
             decompress_temperature=DECOMPRESS_TEMPERATURE,
             sample_num=SAMPLE_NUM, sample_seed=np.array([SAMPLE_SEED, 0x5EED], np.int32),
             sample_temperature=SAMPLE_TEMPERATURE)
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, str(inputs)] + exported["versions"],
        capture_output=True, text=True, timeout=600, cwd=str(inputs.parent),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_fresh_process_without_vlae_tf_matches_the_keras_model(exported, fresh_process_outputs):
    expected = exported["expected"]
    outputs = fresh_process_outputs[exported["versions"][0]]
    assert outputs["signatures"] == sorted(export.SIGNATURES + ("serving_default",))
    for key in ("elbo", "recon", "kl"):
        np.testing.assert_allclose(outputs["elbo"][key], expected["elbo"][key],
                                   rtol=1e-5, atol=1e-4)
    assert outputs["serving_default"] == outputs["elbo"]
    np.testing.assert_allclose(outputs["log_likelihood"]["log_likelihood"],
                               expected["log_likelihood"], rtol=1e-5, atol=1e-4)
    for key in ("mean", "scale"):
        np.testing.assert_allclose(outputs["encode"][key], expected["encode"][key],
                                   rtol=1e-5, atol=1e-5)
    # Sampling: same seed -> the very same images as the Keras model's.
    np.testing.assert_array_equal(outputs["sample"]["images"], expected["sample"])
    np.testing.assert_array_equal(outputs["decompress"]["images"], expected["decompress"])
    assert outputs["sample_again"] == outputs["sample"]
    assert outputs["sample_other_seed"] != outputs["sample"]
    # The checks above are not vacuous: the outputs vary across images and pixels.
    assert np.ptp(expected["elbo"]["elbo"]) > 0.1 and np.ptp(expected["encode"]["mean"]) > 0.01
    assert 0 < np.mean(expected["sample"]) < 1 and 0 < np.mean(expected["decompress"]) < 1
    # The importance-sampled bound differs from the single-sample ELBO (K = 7 samples).
    assert not np.allclose(expected["log_likelihood"], expected["elbo"]["elbo"])


def test_exporting_twice_gives_identical_outputs(exported, fresh_process_outputs):
    first, second = (fresh_process_outputs[path] for path in exported["versions"])
    assert first == second


def test_fresh_process_refuses_requests_over_the_limits_and_stays_up(exported,
                                                                     fresh_process_outputs):
    """Issue 16: `sample(num=10**6)` killed the process (SIGSEGV), `log_likelihood(
    num_samples=2**31-1)` ran forever. The limits fixed at export are in the SavedModel and
    refuse such requests with an error naming the argument, the limit and the value."""
    outputs = fresh_process_outputs["limits"]
    assert outputs["limits"] == LIMITS
    refused = outputs["refused"]
    expected = {
        "sample_num_1e6": r"num: expected at most 3 images per request \(limit max_num, "
                          r"fixed at export\); got\] \[1000000\]",
        "sample_num_int32_max": r"num: expected at most 3 images .*\[2147483647\]",
        "sample_num_negative": r"num: expected an int >= 1; got\] \[-3\]",
        "log_likelihood_int32_max": r"num_samples: expected at most 7 importance samples per "
                                    r"request \(limit max_num_samples, fixed at export\); "
                                    r"got\] "
                                    r"\[2147483647\]",
        "log_likelihood_negative": r"num_samples: expected an int >= 1; got\] \[-1\]",
        "elbo_too_many_images": r"images: expected at most 12 images per request \(limit "
                                r"max_images, fixed at export\); got\] \[13\]",
        "decompress_too_many_images": r"images: expected at most 12 images per request",
    }
    for key, pattern in expected.items():
        assert refused[key] is not None, f"{key} was not refused"
        assert re.search(pattern, refused[key]), (key, refused[key])
    # Still serving: valid requests after the refused ones, with the usual results.
    np.testing.assert_array_equal(outputs["sample_after"]["images"],
                                  exported["expected"]["sample"])
    log_px = outputs["log_likelihood_after"]["log_likelihood"]  # K = max_num_samples: allowed
    np.testing.assert_allclose(log_px, exported["expected"]["log_likelihood"], rtol=1e-5,
                               atol=1e-4)


def test_request_limits_are_checked_and_have_memory_based_defaults():
    model = vlae_tf.VLAE(tiny_config())
    assert export.resolve_limits(model, max_images=np.int64(5), max_num=2) == {
        "max_images": 5, "max_num": 2, "max_num_samples": export.DEFAULT_MAX_NUM_SAMPLES}
    for name, bad in [("max_images", 0), ("max_num", True), ("max_num_samples", 2.5),
                      ("max_num", 2 ** 31)]:
        with pytest.raises(ValueError, match=rf"{name}: expected an int in \[1, 2147483647\]"):
            export.resolve_limits(model, **{name: bad})
    # A decoder pass of the default number of images fits in 1 GiB by the estimate.
    cpu = vlae_tf.VLAE(vlae_tf.presets.get("mnist_cpu"))
    limits = export.default_limits(cpu)
    assert limits["max_images"] == limits["max_num"] == 64
    assert 64 * export.decoder_bytes_per_image(cpu) <= export.DEFAULT_REQUEST_BYTES
    assert 128 * export.decoder_bytes_per_image(cpu) > export.DEFAULT_REQUEST_BYTES
    assert export.default_limits(model)["max_images"] == export.MAX_DEFAULT_IMAGES  # tiny


def test_log_likelihood_chunk_shrinks_for_large_requests(loaded, exported):
    """12 images (max_images): one importance sample per decoder pass instead of 3, so a
    pass holds at most max_images images; the numbers do not depend on the chunk."""
    images = np.concatenate([exported["images"]] * 3)
    served = loaded.signatures["log_likelihood"](images=tf.constant(images),
                                                 num_samples=tf.constant([NUM_SAMPLES]))
    np.testing.assert_allclose(
        served["log_likelihood"],
        exported["model"].importance_log_likelihood(images, NUM_SAMPLES, chunk_size=CHUNK_SIZE),
        rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------ validation
def _bad_calls():
    images = binary_images()
    ok = {"num_samples": np.full([4], 2, np.int32), "seed": np.array([[1, 2]] * 4, np.int32),
          "temperature": np.ones([4], np.float32)}
    sample_ok = {"num": np.array([2], np.int32), "seed": np.array([[1, 2]], np.int32),
                 "temperature": np.array([1.0], np.float32)}
    return [
        ("elbo", {"images": images * 2}, r"images: values must be in \[0, 1\]"),
        ("elbo", {"images": images.astype(np.float32)}, r"uint8"),
        ("elbo", {"images": images[:, :4]}, r"images .*expected shape \[\?,8,8,1\]"),
        ("encode", {"images": images[0]}, r"images .*expected shape \[\?,8,8,1\]"),
        ("elbo", {"images": images[:0]}, r"images: expected at least one image"),
        ("log_likelihood", {"images": images, "num_samples": np.zeros([4], np.int32)},
         r"num_samples: expected an int >= 1"),
        ("log_likelihood", {"images": images, "num_samples": np.int32(4)},
         r"num_samples .*expected shape \[\?\]"),
        ("log_likelihood", {"images": images, "num_samples": np.array([2, 2], np.int32)},
         r"num_samples: expected one value per request \(shape \[1\]\) or one per image"),
        ("log_likelihood", {"images": images, "num_samples": np.array([2, 2, 2, 3], np.int32)},
         r"num_samples: expected the same value in every instance"),
        ("log_likelihood", {"images": images, "num_samples": ok["num_samples"].astype(np.int64)},
         r"int32"),
        ("decompress", {"images": images, "seed": ok["seed"],
                        "temperature": np.zeros([4], np.float32)},
         r"temperature: expected a finite float > 0"),
        ("decompress", {"images": images, "seed": np.array([1, 2], np.int32),
                        "temperature": ok["temperature"]}, r"seed .*expected shape \[\?,2\]"),
        ("decompress", {"images": images, "seed": np.array([[1, 2], [1, 3]] * 2, np.int32),
                        "temperature": ok["temperature"]},
         r"seed: expected the same value in every instance"),
        ("sample", {**sample_ok, "num": np.array([0], np.int32)}, r"num: expected an int >= 1"),
        ("sample", {**sample_ok, "temperature": np.array([np.nan], np.float32)},
         r"temperature: expected a finite float > 0"),
        ("sample", {**sample_ok, "seed": np.array([[1, 2, 3]], np.int32)},
         r"seed .*expected shape \[\?,2\]"),
        ("sample", {**sample_ok, "num": np.array([], np.int32)},
         r"num: expected one value per request"),
    ]


@pytest.mark.parametrize("signature,inputs,message", _bad_calls(),
                         ids=[f"{call[0]}-{index}" for index, call in enumerate(_bad_calls())])
def test_signatures_reject_bad_inputs_with_clear_messages(loaded, signature, inputs, message):
    function = loaded.signatures[signature]
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError),
                       match=message):
        function(**{key: tf.constant(value) for key, value in inputs.items()})


def test_valid_per_request_parameters_may_be_given_once(loaded, exported):
    """A single value (shape [1]) is the columnar / gRPC form of a per-request parameter."""
    images = exported["images"]
    once = loaded.signatures["log_likelihood"](
        images=tf.constant(images), num_samples=tf.constant([NUM_SAMPLES]))
    np.testing.assert_allclose(once["log_likelihood"], exported["expected"]["log_likelihood"],
                               rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------- row format and the client
def _load_client():
    spec = importlib.util.spec_from_file_location(
        "serving_client", os.path.join(REPO, "examples", "serving_client.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tf_serving_rest(loaded_model, url, body):
    """What TF Serving's REST :predict does with a row-format ("instances") request:
    stack each named input over the instances (a bare value per instance when the
    signature has one input), run the signature, return rows (unnamed if one output)."""
    assert re.fullmatch(r"http://serving\.test:8501/v1/models/vlae(/versions/\d+)?:predict",
                        url), url
    request = json.loads(body)
    function = loaded_model.signatures[request.get("signature_name", "serving_default")]
    specs = function.structured_input_signature[1]
    instances = request["instances"]
    if len(specs) == 1:
        inputs = {name: np.asarray(instances, spec.dtype.as_numpy_dtype)
                  for name, spec in specs.items()}
    else:
        inputs = {name: np.asarray([instance[name] for instance in instances],
                                   spec.dtype.as_numpy_dtype) for name, spec in specs.items()}
    try:
        outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
    except tf.errors.InvalidArgumentError as error:
        return json.dumps({"error": error.message}).encode()
    outputs = {name: value.numpy().tolist() for name, value in outputs.items()}
    if len(outputs) == 1:
        predictions = next(iter(outputs.values()))
    else:
        rows = len(next(iter(outputs.values())))
        predictions = [{name: value[row] for name, value in outputs.items()}
                       for row in range(rows)]
    return json.dumps({"predictions": predictions}).encode()


def test_serving_client_requests_in_the_instances_format(loaded, exported, capsys):
    client = _load_client()
    transport = functools.partial(_tf_serving_rest, loaded)
    images, expected = exported["images"], exported["expected"]

    def predict(body):
        json.dumps(body)  # a plain JSON document
        return client.predict(body, server="http://serving.test:8501", transport=transport)

    terms = predict(client.build_request("elbo", images=images))
    np.testing.assert_allclose(terms["elbo"], expected["elbo"]["elbo"], rtol=1e-5, atol=1e-4)
    default = predict({"instances": images.tolist()})  # no signature_name: serving_default
    np.testing.assert_array_equal(default["elbo"], terms["elbo"])
    log_px = predict(client.build_request("log_likelihood", images=images,
                                          num_samples=NUM_SAMPLES))
    np.testing.assert_allclose(log_px["log_likelihood"], expected["log_likelihood"],
                               rtol=1e-5, atol=1e-4)
    posterior = predict(client.build_request("encode", images=images))
    np.testing.assert_allclose(posterior["mean"], expected["encode"]["mean"], atol=1e-5)
    lossy = predict(client.build_request("decompress", images=images, seed=DECOMPRESS_SEED,
                                         temperature=DECOMPRESS_TEMPERATURE))
    np.testing.assert_array_equal(lossy["images"], expected["decompress"])
    samples = predict(client.build_request("sample", num=SAMPLE_NUM,
                                           seed=[SAMPLE_SEED, 0x5EED],
                                           temperature=SAMPLE_TEMPERATURE))
    np.testing.assert_array_equal(samples["images"], expected["sample"])
    with pytest.raises(RuntimeError, match="num_samples: expected an int >= 1"):
        predict(client.build_request("log_likelihood", images=images, num_samples=0))
    with pytest.raises(ValueError, match="images: expected a 4-D"):
        client.build_request("elbo", images=images[0])

    assert client.main(["--signature=sample", "--num=2", "--seed=1,2", "--dry_run"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body == {"signature_name": "sample",
                    "instances": [{"num": 2, "seed": [1, 2], "temperature": 1.0}]}


# ------------------------------------------------------------------ other configurations
def test_unconditional_model_exports_without_encode_and_decompress(tmp_path):
    model = perturbed_model(tiny_config(use_latent=False, window=(3, 1)), seed=1)
    images = binary_images(3, seed=1)
    version_dir = export.export_saved_model(model, str(tmp_path), chunk_size=2)
    signatures = tf.saved_model.load(version_dir).signatures
    assert sorted(signatures) == ["elbo", "log_likelihood", "sample", "serving_default"]
    terms = signatures["elbo"](images=tf.constant(images))
    np.testing.assert_allclose(terms["elbo"], model.elbo(images)["elbo"], rtol=1e-5, atol=1e-4)
    log_px = signatures["log_likelihood"](images=tf.constant(images),
                                          num_samples=tf.constant([5]))
    np.testing.assert_array_equal(log_px["log_likelihood"], terms["elbo"])  # exact: no z
    samples = signatures["sample"](num=tf.constant([2]), seed=tf.constant([[3, 0x5EED]]),
                                   temperature=tf.constant([1.0]))
    np.testing.assert_array_equal(samples["images"],
                                  model.sample(2, seed=3, method="naive"))


def test_vamp_prior_model_exports(tmp_path):
    """The VampPrior samples z through the encoder (pseudo-inputs): also in the graph."""
    model = perturbed_model(tiny_config(prior="vamp"), seed=4)
    images = binary_images(3, seed=2)
    version_dir = export.export_saved_model(model, str(tmp_path), chunk_size=2)
    signatures = tf.saved_model.load(version_dir).signatures
    terms = signatures["elbo"](images=tf.constant(images))
    np.testing.assert_allclose(terms["kl"], model.elbo(images)["kl"], rtol=1e-5, atol=1e-4)
    samples = signatures["sample"](num=tf.constant([2]), seed=tf.constant([[3, 0x5EED]]),
                                   temperature=tf.constant([0.9]))
    np.testing.assert_array_equal(samples["images"],
                                  model.sample(2, seed=3, temperature=0.9, method="naive"))


def test_logistic_mixture_model_signatures(tmp_path):
    model = perturbed_model(tiny_config(likelihood="logistic_mixture", num_mixtures=2,
                                        image_shape=(6, 6, 3), iaf_steps=0), seed=2, scale=0.1)
    images = np.random.default_rng(3).integers(0, 256, (2, 6, 6, 3)).astype(np.uint8)
    version_dir = export.export_saved_model(model, str(tmp_path), chunk_size=2)
    signatures = tf.saved_model.load(version_dir).signatures
    log_px = signatures["log_likelihood"](images=tf.constant(images),
                                          num_samples=tf.constant([2, 2]))
    np.testing.assert_allclose(log_px["log_likelihood"],
                               model.importance_log_likelihood(images, 2, chunk_size=2),
                               rtol=1e-5, atol=1e-3)

    def decompress(seed):
        return signatures["decompress"](images=tf.constant(images), seed=tf.constant([seed]),
                                        temperature=tf.constant([0.7]))["images"].numpy()

    # Same seed, same images, bit for bit; 8-bit values. (Against the Python library the
    # draws of a logistic mixture are not bit-identical: a rounding difference of 1e-7
    # between two differently optimised graphs can move a continuous draw across a bin
    # edge, and the autoregressive draws after it diverge. See BUILD_NOTES.)
    lossy = decompress([4, 5])
    assert lossy.dtype == np.uint8 and lossy.shape == images.shape
    np.testing.assert_array_equal(decompress([4, 5]), lossy)
    assert not np.array_equal(decompress([4, 6]), lossy)
    assert len(np.unique(lossy)) > 20  # 8-bit draws, not a binary or constant image


# ----------------------------------------------------------------------- launch.export
def test_launch_export_cli_from_a_model_dir(exported, loaded, tmp_path):
    """`python -m launch.export` on a model_dir laid out as launch.train writes it."""
    model, images = exported["model"], exported["images"]
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(model.config.to_json())
    model.save_weights(str(model_dir / "model.weights.h5"))
    export_dir = tmp_path / "exports"
    result = subprocess.run(
        [sys.executable, "-m", "launch.export", f"--model_dir={model_dir}",
         f"--export_dir={export_dir}", f"--chunk_size={CHUNK_SIZE}", "--max_num_samples=9"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
             "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"SavedModel written to {export_dir / '1'}" in result.stdout
    assert "serving_default = elbo" in result.stdout
    assert "log_likelihood(images: uint8[?, 8, 8, 1], num_samples: int32[?])" in result.stdout
    # --max_num_samples as given, the other limits the model's defaults (tiny: the cap).
    assert ("request limits: at most 1024 images per elbo / log_likelihood / encode / "
            "decompress request, 1024 per sample request, 9 importance samples per "
            "log_likelihood request") in result.stdout
    assert {key: int(value) for key, value in tf.saved_model.load(
        str(export_dir / "1")).limits().items()} == {
        "max_images": 1024, "max_num": 1024, "max_num_samples": 9}
    # Same weights, same graph: the same numbers as the library export, bit for bit.
    signatures = tf.saved_model.load(str(export_dir / "1")).signatures
    for name, inputs in [("elbo", {"images": images}),
                         ("sample", {"num": [2], "seed": [[1, 2]], "temperature": [1.0]})]:
        ours = signatures[name](**{key: tf.constant(value) for key, value in inputs.items()})
        reference = loaded.signatures[name](
            **{key: tf.constant(value) for key, value in inputs.items()})
        for key in ours:
            np.testing.assert_array_equal(ours[key], reference[key])

    from launch import export as launch_export
    from launch.common import LaunchError
    with pytest.raises(LaunchError, match="exists.*--overwrite"):
        launch_export.export(str(model_dir), str(export_dir), version=1)


def test_launch_export_loads_other_weight_files(exported, tmp_path):
    from launch import export as launch_export
    from launch.common import LaunchError

    model, images = exported["model"], exported["images"]
    expected = model.elbo(images)["elbo"]
    (tmp_path / "config.json").write_text(model.config.to_json())
    # A tf.train checkpoint prefix, config from model_dir.
    prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt-1"))
    restored = launch_export.load_model(model_dir=str(tmp_path), weights=prefix)
    np.testing.assert_array_equal(restored.elbo(images)["elbo"], expected)
    # A .keras file needs no config.
    model.save(str(tmp_path / "vlae.keras"))
    restored = launch_export.load_model(weights=str(tmp_path / "vlae.keras"))
    np.testing.assert_array_equal(restored.elbo(images)["elbo"], expected)
    with pytest.raises(LaunchError, match="model.weights.h5 not found"):
        launch_export.load_model(model_dir=str(tmp_path))  # no training output yet
    with pytest.raises(LaunchError, match="--config_json: required"):
        launch_export.load_model(weights=str(tmp_path / "x.weights.h5"))
    with pytest.raises(LaunchError, match="checkpoint prefix"):
        launch_export.load_model(model_dir=str(tmp_path), weights=str(tmp_path / "nothing"))
    with pytest.raises(LaunchError, match="--export_dir"):
        launch_export.export(model_dir=str(tmp_path), export_dir="")

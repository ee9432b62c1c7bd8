"""MultiWorkerMirroredStrategy with two real worker processes on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vlae_tf import distribute

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from vlae_tf import distribute
    strategy = distribute.make_strategy("multi_worker")
    import keras, vlae_tf
    from vlae_tf.config import VLAEConfig
    config = VLAEConfig(image_shape=(8, 8, 1), latent_size=4, encoder_filters=(8,),
                        encoder_hidden=16, prior="af", prior_steps=1, prior_hidden=(8,),
                        window=(3, 2), decoder_layers=2, decoder_filters=8,
                        decoder_residual_blocks=0, z_map_channels=4, ema_momentum=None)
    images = (np.random.default_rng(0).random((32, 8, 8, 1)) < 0.3).astype(np.uint8)
    keras.utils.set_random_seed(3)
    with strategy.scope():
        model = vlae_tf.VLAE(config)
        model.compile()
    data = tf.data.Dataset.from_tensor_slices(images).batch(8, drop_remainder=True)
    history = model.fit(distribute.collective_friendly(data), epochs=2, verbose=0)
    weights = np.concatenate([w.numpy().ravel() for w in model.trainable_weights])
    print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                      "chief": distribute.is_chief(strategy),
                      "loss": history.history["loss"], "checksum": float(np.sum(weights)),
                      "head": weights[:50].tolist()}))
""")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:
        handle.bind(("127.0.0.1", 0))
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


def test_two_local_workers_train_and_agree_on_the_weights():
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        environment = {**os.environ, "TF_CONFIG": json.dumps(tf_config),
                       "TF_CPP_MIN_LOG_LEVEL": "2"}
        processes.append(subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT], cwd=REPO,
                                          env=environment, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, stderr[-3000:]
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    first, second = outputs
    assert first["replicas"] == second["replicas"] == 2
    assert [first["chief"], second["chief"]] == [True, False]
    assert np.all(np.isfinite(first["loss"])) and first["loss"][-1] < first["loss"][0]
    np.testing.assert_array_equal(first["head"], second["head"])
    assert first["checksum"] == second["checksum"]


def test_strategy_factory_errors_name_the_problem(monkeypatch):
    with pytest.raises(ValueError, match="strategy: expected one of"):
        distribute.make_strategy("tpu_pod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG: expected JSON"):
        distribute.make_strategy("multi_worker")

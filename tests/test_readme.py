"""The README's ```python blocks run as written (so the README cannot drift from the API).

Each block is extracted from README.md and executed unchanged, in a fresh namespace, with
the working directory in a temporary directory. The only help it gets:
- VLAE_README_TINY=1 in the environment, which the first block reads for its sizes (a
  tiny model, a few images, one epoch, K=4): the README says so in the block itself;
- a tiny model_dir at runs/quickstart, for the `vlae_tf.load("runs/quickstart")` line
  (the README's user has one from the quickstart).
Blocks whose first line is the marker comment `# readme-test: not run (<reason>)` are
skipped, exactly those (they need GPUs, several machines or TF Serving); the marker must
give a reason.
"""

import json
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"#\s*readme-test:\s*not run\s*\((?P<reason>[^)]+)\)")


def python_blocks():
    with open(os.path.join(REPO, "README.md")) as handle:
        text = handle.read()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert blocks, "README.md has no ```python blocks: did the fence style change?"
    return blocks


def test_every_python_block_runs_or_says_why_not(tmp_path, monkeypatch):
    import vlae_tf
    from vlae_tf import loading

    blocks = python_blocks()
    skipped = [block for block in blocks if MARKER.match(block.splitlines()[0])]
    # Any other mention of the marker is a typo that would silently run or skip a block.
    assert sum(block.count("readme-test") for block in blocks) == len(skipped)
    run = [block for block in blocks if block not in skipped]
    assert run, "every README block is marked not-run"

    monkeypatch.setenv("VLAE_README_TINY", "1")
    monkeypatch.chdir(tmp_path)
    # runs/quickstart as launch.train leaves it after one epoch (run.json selects the last
    # epoch), written directly: training it would double the test's time.
    tiny = vlae_tf.presets.get("mnist_cpu").replace(
        latent_size=4, encoder_filters=(8,), encoder_hidden=16, prior_steps=1,
        prior_hidden=(16,), decoder_filters=8, decoder_residual_blocks=0)
    model_dir = tmp_path / "runs" / "quickstart"
    model_dir.mkdir(parents=True)
    (model_dir / loading.CONFIG_FILE).write_text(json.dumps(tiny.to_dict()))
    (model_dir / loading.RUN_FILE).write_text(json.dumps({"select": "last"}))
    model = vlae_tf.VLAE(tiny)
    model.build()
    model.save_weights(str(model_dir / loading.WEIGHTS_FILE))

    for index, block in enumerate(run):
        try:
            exec(compile(block, f"README.md python block {index + 1}", "exec"), {})
        except Exception as error:  # name the block: the traceback's line numbers are in it
            pytest.fail(f"README python block {index + 1} failed: {error!r}\n{block}")
    assert (tmp_path / "samples.png").exists()  # the first block's last picture

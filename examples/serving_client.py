"""A small TF Serving REST client for an exported VLAE (standard library + numpy only).

Serve an export (see README, "Serving"), then for example

    python examples/serving_client.py --signature=elbo --images=images.npy
    python examples/serving_client.py --signature=log_likelihood --images=images.npy \\
        --num_samples=1024
    python examples/serving_client.py --signature=sample --num=4 --seed=7,24301 --out=s.npy
    python examples/serving_client.py --signature=encode --random_images=4 --dry_run

`--images` is a .npy file of uint8 images [B, H, W, C] (values 0/1 for a Bernoulli model,
0..255 for a logistic-mixture model); `--random_images=N` sends N random binary images of
the model's shape (read from the server's metadata, or `--image_shape=28,28,1`);
`--dry_run` prints the request body instead of sending it.

Requests use the REST row ("instances") format: one JSON object per image with every
named input of the signature; the per-request parameters (num_samples, seed, temperature)
are repeated in every instance, because a request is evaluated with one value of each.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Callable, Optional

import numpy as np

DEFAULT_SERVER = "http://localhost:8501"
DEFAULT_MODEL = "vlae"
# TF Serving's row format leaves out the name of a signature's only output.
SINGLE_OUTPUT = {"log_likelihood": "log_likelihood", "decompress": "images", "sample": "images"}


def build_request(signature: str, images=None, num_samples: Optional[int] = None,
                  seed=None, temperature: Optional[float] = None,
                  num: Optional[int] = None) -> dict:
    """The JSON body of a :predict request in the row ("instances") format.

    signature: "elbo" (= serving_default), "log_likelihood", "encode", "decompress" or
    "sample". images: uint8 [B, H, W, C] for every signature but "sample". seed: an int
    pair [a, b] (the library's int seed s is [s, 24301]).
    """
    def pair(value):
        values = [int(v) for v in np.asarray(value).reshape(-1)]
        if len(values) != 2:
            raise ValueError(f"seed: expected two ints [a, b]; got {value!r}")
        return values

    if signature == "sample":
        if images is not None:
            raise ValueError("sample: takes no images")
        instance = {"num": int(num if num is not None else 1),
                    "seed": pair(seed if seed is not None else [0, 24301]),
                    "temperature": float(1.0 if temperature is None else temperature)}
        return {"signature_name": signature, "instances": [instance]}
    if images is None:
        raise ValueError(f"{signature}: expected images [B, H, W, C]")
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images: expected a 4-D uint8 batch [B, H, W, C]; got shape "
                         f"{images.shape}")
    if images.dtype.kind not in "biu":
        raise ValueError(f"images: expected integer pixel values; got dtype {images.dtype}")
    parameters = {}
    if signature == "log_likelihood":
        parameters["num_samples"] = int(num_samples if num_samples is not None else 1024)
    elif signature == "decompress":
        parameters["seed"] = pair(seed if seed is not None else [0, 24301])
        parameters["temperature"] = float(1.0 if temperature is None else temperature)
    elif signature not in ("elbo", "serving_default", "encode"):
        raise ValueError(f"signature: expected one of elbo, log_likelihood, encode, "
                         f"decompress, sample; got {signature!r}")
    if not parameters:  # a single input: each instance is just the image
        return {"signature_name": signature, "instances": images.tolist()}
    return {"signature_name": signature,
            "instances": [{"images": image.tolist(), **parameters} for image in images]}


def parse_response(response: dict, signature: str = "elbo") -> dict:
    """{output name: numpy array} from a row-format response ({"predictions": [...]})."""
    if "error" in response:
        raise RuntimeError(f"server error: {response['error']}")
    rows = response["predictions"]
    if rows and isinstance(rows[0], dict):
        return {key: np.asarray([row[key] for row in rows]) for key in rows[0]}
    return {SINGLE_OUTPUT.get(signature, "output"): np.asarray(rows)}


def urllib_transport(url: str, body: bytes, timeout: float = 600.0) -> bytes:
    """POST `body` (JSON) to `url`; returns the response body (also for HTTP errors, whose
    JSON {"error": ...} says what the server expected)."""
    request = urllib.request.Request(url, data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        return error.read()


def predict(body: dict, server: str = DEFAULT_SERVER, model: str = DEFAULT_MODEL,
            version: Optional[int] = None,
            transport: Callable[[str, bytes], bytes] = urllib_transport) -> dict:
    """Sends a :predict request; returns {output name: numpy array}."""
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":predict"
    answer = transport(server.rstrip("/") + path, json.dumps(body).encode("utf-8"))
    return parse_response(json.loads(answer), body.get("signature_name", "serving_default"))


def model_image_shape(server: str, model: str, signature: str = "serving_default"):
    """(H, W, C) of the served model, read from its metadata endpoint."""
    with urllib.request.urlopen(f"{server.rstrip('/')}/v1/models/{model}/metadata") as reply:
        metadata = json.load(reply)
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    dims = signatures[signature]["inputs"]["images"]["tensor_shape"]["dim"]
    return tuple(int(dim["size"]) for dim in dims[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--signature", default="elbo",
                        choices=["elbo", "log_likelihood", "encode", "decompress", "sample"])
    parser.add_argument("--images", help=".npy file of uint8 images [B, H, W, C]")
    parser.add_argument("--random_images", type=int, default=0,
                        help="send this many random binary images instead")
    parser.add_argument("--image_shape", default=None, help="H,W,C for --random_images")
    parser.add_argument("--num_samples", type=int, default=1024)
    parser.add_argument("--num", type=int, default=4)
    parser.add_argument("--seed", default="0,24301", help="two ints a,b")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--out", default=None, help="save the outputs to this .npz/.npy")
    parser.add_argument("--dry_run", action="store_true", help="print the request body")
    args = parser.parse_args(argv)

    images = None
    if args.signature != "sample":
        if args.images:
            images = np.load(args.images)
        elif args.random_images:
            shape = (tuple(int(v) for v in args.image_shape.split(",")) if args.image_shape
                     else model_image_shape(args.server, args.model))
            images = (np.random.default_rng(0).random((args.random_images,) + shape) < 0.3
                      ).astype(np.uint8)
        else:
            parser.error("--images or --random_images is required for this signature")
    body = build_request(args.signature, images=images, num_samples=args.num_samples,
                         seed=[int(v) for v in args.seed.split(",")],
                         temperature=args.temperature, num=args.num)
    if args.dry_run:
        json.dump(body, sys.stdout)
        print()
        return 0
    outputs = predict(body, args.server, args.model, args.version)
    for name, value in outputs.items():
        summary = value if value.ndim <= 1 and value.size <= 16 else \
            f"shape {value.shape}, mean {value.mean():.4g}"
        print(f"{name}: {summary}")
    if args.out:
        if args.out.endswith(".npy"):
            np.save(args.out, next(iter(outputs.values())))
        else:
            np.savez(args.out, **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

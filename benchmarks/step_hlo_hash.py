"""Fingerprint of the one-device train step: the SHA-256 of its lowered StableHLO text
(the `cpu` preset, spec float, a batch of 32 x 3.5 s, no mesh). Two checkouts that print
the same fingerprint compile the same program with the same jax/XLA, so their step times
can differ only by noise.

    PYTHONPATH=CHECKOUT .venv/bin/python benchmarks/step_hlo_hash.py
"""

import hashlib

import jax
import jax.numpy as jnp

from usmlite_edu.speech import batching, presets
from usmlite_edu.training import train


def main() -> None:
    p = presets.get_preset("cpu")
    t = train.Trainer(p.model, "float", p.train)
    params = t.init_params(0)
    opt_state = t.setup_optimizer(params)
    b, n, labels = 32, int(3.5 * p.model.sample_rate), 16
    batch = batching.Batch(
        jnp.zeros((b, n), jnp.float32),
        jnp.full(b, n, jnp.int32),
        jnp.ones((b, labels), jnp.int32),
        jnp.full(b, labels, jnp.int32),
        jnp.ones(b, jnp.float32),
    )
    lowered = t._step.lower(params, opt_state, batch, jax.random.key(0), jnp.asarray(0, jnp.int32))
    text = lowered.as_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    print(
        f"one-device step (cpu preset, float): {len(text)} characters of StableHLO, sha256 {digest[:16]}"
    )


if __name__ == "__main__":
    main()

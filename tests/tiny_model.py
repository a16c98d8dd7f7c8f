"""The tiny Conformer the training tests share (one block of width 32): small enough to
compile in seconds, and the same shapes everywhere so the compile cache is reused."""

#: as ``--set`` overrides of a preset's model
TINY = {
    "model.model_dim": 32,
    "model.num_heads": 2,
    "model.num_layers": 1,
    "model.subsample_channels": (4, 4),
}
#: as ``ConformerConfig.replace`` keywords
TINY_CFG = {k.removeprefix("model."): v for k, v in TINY.items()}

"""The speech recognizer: configurations and presets, audio and corpora, the log-mel
frontend, the tokenizer, batching and augmentation, the Conformer-CTC model, CTC decoding
and the run-directory format."""

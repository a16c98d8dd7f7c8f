"""Forward-only use of a trained model: the :class:`Recognizer`, transcription, integer
inference (``--arith``) and the packed ``.safetensors`` export. Never imports training."""

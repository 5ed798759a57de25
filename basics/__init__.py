"""Unit 1 -- basics: a byte-level BPE tokenizer, a Transformer LM, AdamW and a training loop.

Modules: ``basics.corpus`` (the built-in offline corpus), ``basics.tokenizer`` (``train_bpe``,
``Tokenizer``), ``basics.model`` (``TransformerLM``, ``ModelConfig``), ``basics.nn_utils``,
``basics.optim`` (``AdamW``, schedules), ``basics.data``, ``basics.checkpoint``, ``basics.train``,
``basics.generate``. Importing the package imports none of them.
"""

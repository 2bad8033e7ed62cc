"""The shared SentencePiece tokenizer: special tokens, training, evaluation, encoding."""
